-- One OTP id per request from the file given after `--` (one per line), each wrk thread taking
-- its own slice. args: <file> <verify|show> <code> <wrk threads> <first index>. A verify never reuses an id (each is a
-- first, correct verify); a show walks its slice round and round.
function setup(thread)
  thread:set("tid", #setup_threads)
  table.insert(setup_threads, thread)
end
setup_threads = {}
function init(args)
  local all = {}
  for line in io.lines(args[1]) do all[#all + 1] = line end
  mode, code = args[2], args[3]
  local threads = tonumber(args[4])
  ids = {}
  for i = tid + 1, #all, threads do ids[#ids + 1] = all[i] end
  i = tonumber(args[5]) or 0
end
function request()
  i = i + 1
  local id = ids[(i - 1) % #ids + 1]
  if mode == "verify" then
    return wrk.format("POST", "/v1/otp/" .. id .. "/verify", nil, '{"code":"' .. code .. '"}')
  end
  return wrk.format("GET", "/v1/otp/" .. id)
end
