-- One server, one database per project (each project owns its own database).
CREATE DATABASE products_admin;
CREATE DATABASE products_catalog;
-- Nobody but the owner reaches a database unless granted (scripts/db_roles.py grants each
-- process's role CONNECT on its project's database only, after `migrate`; it also revokes these
-- again, so the same holds on a server this file never ran on).
REVOKE CONNECT, TEMPORARY ON DATABASE products_admin FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE products_catalog FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;
