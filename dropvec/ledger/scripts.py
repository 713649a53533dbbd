"""The ledger's Lua scripts (``StateStore``): what must change in one step, with its keys and
arguments. Each runs atomically in Redis, so that a task is counted once and a file becomes
indexed once, whichever worker and producer race."""

# A file is indexed once every one of its tasks is counted and its task count is known (the
# producer sets it after the last task is sent: tasks leave while the file is still being split).
# Returns 2 when this call made the file indexed.
MAYBE_INDEXED = """
local tasks = tonumber(redis.call('HGET', KEYS[2], 'task_count') or '0')
if tasks > 0 and redis.call('SCARD', KEYS[1]) >= tasks
   and redis.call('HGET', KEYS[2], 'status') ~= 'indexed' then
  redis.call('HSET', KEYS[2], 'status', 'indexed', 'updated_at', ARGV[1], 'indexed_at', ARGV[1],
             'reason', '')
  redis.call('HINCRBY', KEYS[3], 'files_done', 1)
  return 2
end
return 1
"""

# KEYS: done set, file hash, run hash, rate hash.
# ARGV: now, generation, task_index, chunks, embedded, reused, ttl, rate ttl
# Returns 0 if the task was counted before or belongs to a replaced version.
TASK_DONE = (
    """
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return 0 end
local status = redis.call('HGET', KEYS[2], 'status')
if status ~= 'queued' and status ~= 'indexing' and status ~= 'indexed' then return 0 end
if redis.call('SADD', KEYS[1], ARGV[3]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[4], 'embedded', ARGV[5])
redis.call('HINCRBY', KEYS[4], 'reused', ARGV[6])
redis.call('EXPIRE', KEYS[4], ARGV[8])
redis.call('HINCRBY', KEYS[3], 'chunks_done', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'chunks_embedded', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'chunks_reused', ARGV[6])
redis.call('HINCRBY', KEYS[2], 'chunks_done', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'chunks_embedded', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'chunks_reused', ARGV[6])
if status == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'indexing', 'updated_at', ARGV[1])
else
  redis.call('HSET', KEYS[2], 'updated_at', ARGV[1])
end
"""
    + MAYBE_INDEXED
)

# KEYS: done set, file hash, run hash. ARGV: now, generation, tasks, chunks, digest of the chunk ids
FILE_ENQUEUED = (
    """
redis.call('HINCRBY', KEYS[3], 'chunks_total', ARGV[4])
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'task_count', ARGV[3], 'chunks_total', ARGV[4], 'ids', ARGV[5])
"""
    + MAYBE_INDEXED
)

# KEYS: the generation counter. ARGV: a generation in use. The counter never hands it out again.
RAISE_GENERATION = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
"""
