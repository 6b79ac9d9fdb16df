#!/bin/sh
# The steady state: names other than the dependency's still resolve.
answer=$(dig @10.202.0.2 +time=1 +tries=1 +short cache.drill.test)
echo "cache.drill.test: ${answer:-no answer}"
[ "$answer" = 10.0.0.6 ]
