-- wrk script: POST the JSON bodies of the file WRK_BODIES (one per line) in
-- turn, each thread starting at its own offset, to the request's path.
local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = 0
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  thread:set("offset", math.random(#bodies))
end

function init(args)
  next_body = offset or 0
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[next_body])
end
