//! `pickup_timeout`: a job no worker has taken in time is withdrawn from the queue, atomically,
//! so that it never runs later, and the request fails over as a failure before the first byte.
//!
//! "Taken" means delivered to some consumer group: the job's entry id is at or below the
//! group's `last-delivered-id`. Check and delete run in one Lua script, so a worker cannot take
//! the job between the two.

use super::job;
use super::pool::Lease;

/// KEYS[1] the requests stream, ARGV[1] the job's entry id. Returns 1 when withdrawn, 0 when a
/// group has already delivered it. Lua sees RESP2 replies: each group is a flat field list.
const WITHDRAW_UNLESS_TAKEN: &str = r"
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 1 end
local function at_or_before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if not bm then return false end
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as <= bs)
end
for _, group in ipairs(groups) do
  for i = 1, #group, 2 do
    if group[i] == 'last-delivered-id' and at_or_before(ARGV[1], group[i + 1]) then
      return 0
    end
  end
end
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
";

/// Withdraws the job unless a worker has taken it; `true` when withdrawn.
pub async fn withdraw_unless_taken(lease: &mut Lease, entry_id: &str) -> redis::RedisResult<bool> {
    let mut eval = redis::cmd("EVAL");
    eval.arg(WITHDRAW_UNLESS_TAKEN)
        .arg(1)
        .arg(job::REQUESTS_STREAM)
        .arg(entry_id);
    let withdrawn: i64 = lease.cmd(&eval).await?;
    Ok(withdrawn == 1)
}
