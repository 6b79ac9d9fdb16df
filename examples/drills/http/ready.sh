#!/bin/sh
# The server is ready once it answers.
exec curl --silent --fail --max-time 1 --output /dev/null http://10.201.0.2:8080/
