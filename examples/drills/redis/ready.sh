#!/bin/sh
# Redis is ready once it answers.
exec redis-cli -p 6399 ping
