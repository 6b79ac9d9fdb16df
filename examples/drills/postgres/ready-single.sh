#!/bin/sh
# Ready once the server answers and has the drill's table (made here, once).
psql -h 127.0.0.1 -p 5493 -U postgres -Atq -c "CREATE TABLE IF NOT EXISTS drill (n bigint PRIMARY KEY)" >/dev/null 2>&1
