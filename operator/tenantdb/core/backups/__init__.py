"""Logical backups of one tenant: dump, archive, store, restore, verify.

The pieces, each its own module, in the order data flows through them:

* ``manifest``  what an archive says about itself (tenant, mode, versions, tables).
* ``dumping``   a tenant's data as a byte stream, per isolation mode, plus the
  per-table row counts and checksums read in the same snapshot.
* ``archive``   the stored form of that stream: compression, authenticated
  encryption, the sha256 of the whole, the manifest beside it.
* ``compression`` / ``encryption``  the codecs and the key hierarchy ``archive`` uses.
* ``storage``   where archives live (a volume directory), streamed; ``s3`` the same
  over an S3 bucket.
* ``restoring`` a stream back into a freshly provisioned tenant.
* ``verifying`` restore into a scratch copy and compare with the manifest.
"""
