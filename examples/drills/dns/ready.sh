#!/bin/sh
# The resolver is ready once it answers.
exec dig @10.202.0.2 +time=1 +tries=1 +short cache.drill.test | grep -q 10.0.0.6
