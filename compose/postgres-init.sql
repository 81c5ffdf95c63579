-- One server, one database per project (each project owns its own database).
CREATE DATABASE products_admin;
CREATE DATABASE products_catalog;
