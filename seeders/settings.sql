-- name: settings
-- version: 1
-- profile: production
-- depends: plans
-- description: Default settings every tenant starts with; values a tenant changed are kept.

INSERT INTO settings (key, value) VALUES
    ('locale', '"en-US"'),
    ('time_zone', '"UTC"'),
    ('default_plan', '"free"'),
    ('sending_window', '{"start": "08:00", "end": "18:00", "weekdays": [1, 2, 3, 4, 5]}'),
    ('tracking', '{"opens": true, "clicks": true}'),
    ('unsubscribe_footer', 'true')
ON CONFLICT DO NOTHING;
