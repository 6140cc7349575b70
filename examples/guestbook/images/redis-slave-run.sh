#!/bin/sh
# The guestbook's redis slave, started as the book's: replicate the master found through
# the service variables (GET_HOSTS_FROM=env) or the DNS name redis-master. redis keeps
# retrying the master until it answers.
if [ "${GET_HOSTS_FROM:-dns}" = "env" ]; then
  master="${REDIS_MASTER_SERVICE_HOST:-}"
  if [ -z "$master" ]; then
    echo "redis-slave: GET_HOSTS_FROM=env but REDIS_MASTER_SERVICE_HOST is not set" >&2
    exit 1
  fi
else
  master=redis-master
fi
echo "redis-slave: replicating from $master:6379"
exec redis-server /etc/redis/redis.conf --replicaof "$master" 6379
