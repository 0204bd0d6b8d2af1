"""The Lua scripts of the shared circuit breaker (see :mod:`._redis_circuit`).

Every script starts with the same prelude: it reads the options (``ARGV[1..11]``),
Redis's ``TIME`` and the state hash, and defines the transitions, each a copy of
:class:`meshlite.state._circuit_local.LocalCircuitState`'s. Numbers are
written back with ``%d`` so that microsecond instants never turn into floats.

A reply reporting a change (its previous state, new state and reason) ends with
the circuit's epoch and ``ig``, the instant its hash was first written, which
tells a circuit's lives apart (a forgotten circuit starts again at epoch 0; see
:mod:`._circuit_seen`); a hash an older script wrote has no ``ig`` and keeps none
(read as 0) for its life.

The window key exists whenever the state hash does (an empty string, or a hash
holding only ``_``, while no call is counted). On a Cluster, a script whose keys
are in a slot being migrated is refused with ``TRYAGAIN`` when some of its keys
are there and some are not, and redis-py's Cluster client then retries with
pauses for about 0.4 s before it gives up; with both keys always present, that
happens only in the instant between the moves of the two keys.

The prelude also bounds what a step back of Redis's own clock does: an
open-until or opened-at instant ahead of ``TIME`` is brought back (an open period
ends at most ``open_seconds`` from now), and a time window's head more than a
window ahead moves back to now, so a step of an hour neither holds the circuit
open nor freezes the window for that hour.

The prelude also mends a breaker that lost one of its two keys (a Redis with a
``maxmemory`` eviction policy evicts keys one by one): a window without its state
hash is dropped, and totals without their window are zeroed. Without this, the
totals drift for good (a ring slot's old outcome is subtracted from totals that
never counted it, or never subtracted from totals that did), and the breaker
opens too early or never.
"""

from __future__ import annotations

import math

from ._base import CircuitConfig
from ._redis import Script

__all__ = ["ACQUIRE", "CONTROL", "READ", "RECORD", "RECORD_MANY", "RELEASE", "script_options"]


def state_ttl_ms(state_ttl: float, o: CircuitConfig) -> int:
    """Milliseconds a breaker's keys live after their last write: ``state_ttl``, but
    never less than twice its open period or its time window."""
    window = float(o.window) if o.window_type == "time" else 0.0
    return math.ceil(max(state_ttl, 2 * o.open_seconds, 2 * window) * 1000)


def script_options(o: CircuitConfig, state_ttl: float) -> tuple[object, ...]:
    """A breaker's options as every script reads them (``ARGV[1..11]``, the prelude)."""
    timed = o.window_type == "time"
    buckets = max(1, math.ceil(o.window)) if timed else int(o.window)
    width = round(float(o.window) / buckets * 1e6) if timed else 0
    slow = "inf" if o.slow_call_seconds is None else f"{o.slow_call_seconds:g}"
    srate = o.slow_call_rate if o.slow_call_seconds is not None else 2.0  # never reached
    return ("1" if timed else "0", buckets, width, o.effective_min_calls,
            repr(float(o.failure_rate)), repr(float(srate)), round(o.open_seconds * 1e6),
            o.half_open_calls, slow, f"{o.open_seconds:g}", state_ttl_ms(state_ttl, o))

_PRELUDE = """
local H, W = KEYS[1], KEYS[2]
local timed = ARGV[1] == '1'
local size, width = tonumber(ARGV[2]), tonumber(ARGV[3])
local min_calls, frate, srate = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local open_us, trials, slow_s, open_s = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], ARGV[10]
local ttl = ARGV[11]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local F = {'st','ep','ou','oa','rs','c','f','s','hd','ta','td','tf','ts','ig'}
local v = redis.call('HMGET', H, unpack(F))
local S = {st = v[1] or 'closed', rs = v[5] or '', ig = v[14] or '0'}
if not v[1] then S.ig = string.format('%d', now) end  -- a new life of the circuit
for i = 2, 13 do if i ~= 5 then S[F[i]] = tonumber(v[i] or '0') end end
if not v[4] then S.oa = -1 end
-- Redis's clock went back (an NTP step, a restored VM): no stored instant may lie
-- ahead of now, so an open period ends at most open_us from here, not that much
-- later plus the step. Written at once: a refusal saves nothing.
if S.oa > now or (S.st == 'open' and S.ou > now + open_us)
    or (S.st == 'half_open' and S.ou > now) then
  if S.oa > now then S.oa = now end
  if S.st == 'open' then S.ou = math.min(S.ou, now + open_us) else S.ou = math.min(S.ou, now) end
  redis.call('HSET', H, 'oa', string.format('%d', S.oa), 'ou', string.format('%d', S.ou))
end
if not v[1] then
  redis.call('DEL', W)
elseif S.c > 0 and redis.call('EXISTS', W) == 0 then
  S.c = 0; S.f = 0; S.s = 0
  if not timed then S.hd = 0 end
end
local function save()
  local a = {}
  for i = 1, 13 do
    local x = S[F[i]]
    if type(x) == 'number' then x = string.format('%d', x) end
    a[#a + 1] = F[i]; a[#a + 1] = x
  end
  if not v[1] then a[#a + 1] = 'ig'; a[#a + 1] = S.ig end
  redis.call('HSET', H, unpack(a))
  redis.call('PEXPIRE', H, ttl)
  if redis.call('EXISTS', W) == 1 then
    redis.call('PEXPIRE', W, ttl)
  elseif timed then
    redis.call('HSET', W, '_', 1); redis.call('PEXPIRE', W, ttl)
  else
    redis.call('SET', W, '', 'PX', ttl)
  end
end
local function begin(state)
  local prev = S.st
  S.ep = S.ep + 1; S.st = state
  return prev
end
local function wipe()
  S.c = 0; S.f = 0; S.s = 0; S.hd = 0
  redis.call('DEL', W)
end
local function open(reason, at)
  local prev = begin('open')
  S.oa = at; S.ou = at + open_us; S.rs = reason
  return {prev, 'open', reason}
end
local function half_open()
  local prev = begin('half_open')
  S.ta = 0; S.td = 0; S.tf = 0; S.ts = 0; S.ou = now  -- half-open: when trials began
  return {prev, 'half_open', 'open for ' .. open_s .. ' s'}
end
local function close(reason)
  local prev = begin('closed')
  wipe(); S.oa = -1; S.rs = ''
  return {prev, 'closed', reason}
end
local function expire()
  if not timed then return end
  local b = math.floor(now / width)
  local head = S.hd
  -- Back by a whole window or more (Redis's clock stepped back): the window goes
  -- on from now, so what it holds is forgotten within one window, not the step.
  if head - b >= size then S.hd = b end
  if b <= head then return end
  S.hd = b
  if b - head >= size then
    if S.c > 0 then S.c = 0; S.f = 0; S.s = 0; redis.call('DEL', W) end
    return
  end
  for k = head + 1, b do
    local i = k % size
    local bc = tonumber(redis.call('HGET', W, 'c' .. i) or '0')
    if bc > 0 then
      S.c = S.c - bc
      S.f = S.f - tonumber(redis.call('HGET', W, 'f' .. i) or '0')
      S.s = S.s - tonumber(redis.call('HGET', W, 's' .. i) or '0')
      redis.call('HDEL', W, 'c' .. i, 'f' .. i, 's' .. i)
    end
  end
end
"""

ACQUIRE = Script(_PRELUDE + """
if S.st == 'closed' then return {2 * S.ep} end
if S.st == 'disabled' then return {-1} end
local tr = {'', '', ''}
if S.st == 'open' then
  if now < S.ou then return {-2, '', '', '', 'open', S.rs, S.ou - now} end
  tr = half_open()
end
if S.st == 'half_open' then
  local permit = -2
  if S.ta < trials then S.ta = S.ta + 1; permit = 2 * S.ep + 1 end
  if permit < 0 and now - S.ou >= open_us then
    -- Trials out for a whole open period: their processes died or could not report
    -- (a permit lives in Redis, not in a call). Open again: the next half-open
    -- period admits fresh trials, instead of none until the state expires.
    tr = open((S.ta - S.td) .. ' of ' .. trials .. ' trial calls did not finish within '
              .. open_s .. ' s', now)
    save()
    return {-2, tr[1], tr[2], tr[3], 'open', S.rs, S.ou - now, S.ep, S.ig}
  end
  if permit >= 0 or tr[1] ~= '' then save() end
  if permit >= 0 then return {permit, tr[1], tr[2], tr[3], S.ep, S.ig} end
  return {-2, tr[1], tr[2], tr[3], 'half_open',
          'all ' .. trials .. ' trial calls are taken', -1, S.ep, S.ig}
end
return {-2, '', '', '', S.st, S.rs, -1}
""")

_RECORD_ONE = """
local function record(permit, failed, slow)
  local tr = nil
  if permit % 2 == 1 then
    if S.st ~= 'half_open' or permit ~= 2 * S.ep + 1 then return {'', '', '', S.st, S.ep} end
    S.td = S.td + 1; S.tf = S.tf + failed; S.ts = S.ts + slow
    if S.td >= trials then
      if S.tf / trials >= frate then
        tr = open(S.tf .. ' of ' .. trials .. ' trial calls failed', now)
      elseif S.ts / trials >= srate then
        tr = open(S.ts .. ' of ' .. trials .. ' trial calls were slow (>= ' .. slow_s .. ' s)', now)
      else
        tr = close((trials - S.tf) .. ' of ' .. trials .. ' trial calls succeeded')
      end
    end
    save()
    if tr then return {tr[1], tr[2], tr[3], S.st, S.ep, S.ig} end
    return {'', '', '', S.st, S.ep}
  end
  if S.st ~= 'closed' or permit ~= 2 * S.ep then return {'', '', '', S.st, S.ep} end
  if timed then
    expire()
    local i = S.hd % size
    redis.call('HINCRBY', W, 'c' .. i, 1)
    if failed > 0 then redis.call('HINCRBY', W, 'f' .. i, 1) end
    if slow > 0 then redis.call('HINCRBY', W, 's' .. i, 1) end
  else
    local i = S.hd
    local old = redis.call('GETRANGE', W, i, i)
    local o = 0
    if old ~= '' then o = string.byte(old) end
    redis.call('SETRANGE', W, i, string.char(failed + 2 * slow))
    S.hd = (i + 1) % size
    if o % 2 == 1 then S.f = S.f - 1 end
    if o >= 2 then S.s = S.s - 1 end
    if S.c >= size then S.c = S.c - 1 end
  end
  S.c = S.c + 1; S.f = S.f + failed; S.s = S.s + slow
  if (S.f > 0 or S.s > 0) and S.c >= min_calls then
    if S.f / S.c >= frate then
      tr = open(S.f .. ' of ' .. S.c .. ' calls failed', now)
    elseif S.s / S.c >= srate then
      tr = open(S.s .. ' of ' .. S.c .. ' calls were slow (>= ' .. slow_s .. ' s)', now)
    end
  end
  save()
  if tr then return {tr[1], tr[2], tr[3], S.st, S.ep, S.ig} end
  return {'', '', '', S.st, S.ep}
end
"""

RECORD = Script(_PRELUDE + _RECORD_ONE + """
return record(tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14]))
""")

# Batched outcomes (RedisStore(circuit_batch=...)): ARGV[12..] are triples.
RECORD_MANY = Script(_PRELUDE + _RECORD_ONE + """
local out = nil
for i = 12, #ARGV, 3 do
  local r = record(tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]))
  if r[1] ~= '' then out = r end
end
if out then return out end  -- (one change at most: an opened circuit ignores the rest)
return {'', '', '', S.st, S.ep}
""")

RELEASE = Script(_PRELUDE + """
local permit = tonumber(ARGV[12])
if S.st == 'half_open' and permit == 2 * S.ep + 1 and S.ta > 0 then
  redis.call('HSET', H, 'ta', S.ta - 1)
  redis.call('PEXPIRE', H, ttl)
end
return 0
""")

CONTROL = Script(_PRELUDE + """
local action = ARGV[12]
local prev, tr = S.st, {}
if action == 'force_open' then
  begin('forced_open'); S.oa = now; S.rs = 'forced open'
  if prev ~= 'forced_open' then tr = {prev, 'forced_open', 'forced open'} end
elseif action == 'reset' then
  close('reset')
  if prev ~= 'closed' then tr = {prev, 'closed', 'reset'} end
elseif action == 'disable' then
  begin('disabled'); wipe(); S.oa = -1; S.rs = ''
  if prev ~= 'disabled' then tr = {prev, 'disabled', 'disabled'} end
else
  open(ARGV[14], now - tonumber(ARGV[13]))
end
save()
if tr[1] then tr[4] = S.ep; tr[5] = S.ig end
return tr
""")

READ = Script(_PRELUDE + """
local state, retry = S.st, -1
if timed then
  local before = S.hd
  expire()
  if S.hd ~= before then save() end
end
if state == 'open' then
  if now >= S.ou then state = 'half_open' else retry = S.ou - now end
end
local ago = -1
if S.oa >= 0 then ago = now - S.oa end
local trial = 0
if S.st == 'half_open' then trial = S.ta end
return {state, S.c, S.f, S.s, ago, retry, trial, S.rs}
""")
