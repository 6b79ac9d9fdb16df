#!/bin/sh
# Ready once the standby answers a query and has the primary's table.
exec psql -h 127.0.0.1 -p 5492 -U postgres -Atq -c "SELECT count(*) FROM drill" >/dev/null 2>&1
