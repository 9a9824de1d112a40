-- POST /v1/otp/send with a distinct recipient per request: +90532 and 7 digits, each wrk
-- thread counting in its own block from the offset given after `--`.
local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end
function init(args)
  n = tonumber(args[1]) + tid * 1000000
end
function request()
  n = n + 1
  return wrk.format("POST", "/v1/otp/send", nil, string.format('{"recipient":"+90532%07d"}', n % 10000000))
end
