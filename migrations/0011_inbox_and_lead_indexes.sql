-- description: Each user's inbox newest first, and leads by status, without blocking writers
-- Runs outside a transaction, one statement at a time: CREATE INDEX
-- CONCURRENTLY refuses transactions. A retry resumes at the statement that
-- did not finish, and an index such a statement left invalid is dropped first.
-- migrate:up transaction:false lock-timeout:10s statement-timeout:1h
CREATE INDEX CONCURRENTLY inbox_messages_user_recent ON inbox_messages (user_id, sent_at DESC);
CREATE INDEX CONCURRENTLY leads_status ON leads (status) WHERE status <> 'lost';
-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS leads_status;
DROP INDEX CONCURRENTLY IF EXISTS inbox_messages_user_recent;
