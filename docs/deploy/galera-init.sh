#!/bin/bash
# Run once by the MariaDB image's entrypoint when a node's data directory is created
# (docker_process_sql is the entrypoint's helper). On joining nodes the state transfer replaces
# all of it with the cluster's data; on the bootstrapping node it creates what the cluster needs.
docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS consent CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE DATABASE IF NOT EXISTS consent_keys CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS 'sst'@'localhost' IDENTIFIED BY '$(cat /run/secrets/sst-password)';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'sst'@'localhost';
SQL
