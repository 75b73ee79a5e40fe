-- Rendered by Sluice. The agent's half of the routing contract (docs/routing.md): for each
-- record, the flows that take it, else the default flow, else nobody. A record nobody takes
-- is dropped here; a record k flows take leaves as k records, each carrying its flow's route
-- under ROUTE_KEY for the rewrite_tag filter that follows. The code is fixed; the routing
-- table is data in ROUTES_FILE, re-read when its first line (the revision) changes, so a
-- Flow edit never restarts the agent.

local ROUTES_FILE = "@ROUTES_FILE@"
local ROUTE_KEY = "@ROUTE_KEY@"
local CHECK_SECONDS = 5

local routes = nil
local revision = nil
local checked_at = 0
local EMPTY = {}

local function first_line(path)
  local file = io.open(path, "r")
  if file == nil then
    return nil
  end
  local line = file:read("*l")
  file:close()
  return line
end

-- The table file is a Lua chunk run with an empty environment: it can build tables and
-- nothing else, whatever it contains.
local function load_routes()
  local line = first_line(ROUTES_FILE)
  if line == nil then
    return false, "cannot read " .. ROUTES_FILE
  end
  if line == revision then
    return true
  end
  local chunk, err = loadfile(ROUTES_FILE)
  if chunk == nil then
    return false, err
  end
  setfenv(chunk, {})
  local ok, loaded = pcall(chunk)
  if not ok then
    return false, tostring(loaded)
  end
  if type(loaded) ~= "table" or type(loaded.c) ~= "table" or type(loaded.n) ~= "table"
    or (loaded.w ~= true and type(loaded.w) ~= "table") then
    return false, "not a routing table"
  end
  routes = loaded
  -- A table swapped in between the two reads is newer than `line`; the next check then
  -- sees a different first line and loads it again, which is harmless.
  revision = line
  return true
end

do
  local ok, err = load_routes()
  if not ok then
    -- Without a table nothing can be routed: fail the filter's start-up, visibly.
    error("sluice: no routing table: " .. tostring(err))
  end
end

local function has_value(list, value)
  for i = 1, #list do
    if list[i] == value then
      return true
    end
  end
  return false
end

local function has_pairs(want, have)
  for key, value in pairs(want) do
    if have[key] ~= value then
      return false
    end
  end
  return true
end

-- Rule fields: s = selects (else excludes), ns/h/c = namespaces/hosts/containers (any one
-- equal), nl/l = namespace labels/labels (every pair present). Absent fields hold.
local function rule_matches(rule, namespace, namespace_labels, labels, host, container)
  return (rule.ns == nil or has_value(rule.ns, namespace))
    and (rule.c == nil or has_value(rule.c, container))
    and (rule.h == nil or has_value(rule.h, host))
    and (rule.l == nil or has_pairs(rule.l, labels))
    and (rule.nl == nil or has_pairs(rule.nl, namespace_labels))
end

-- A flow: r = its route, e = true if it takes a record no rule matched; its array part is
-- the ordered rules, the first matching one decides.
local function flow_takes(flow, namespace, namespace_labels, labels, host, container)
  for i = 1, #flow do
    local rule = flow[i]
    if rule_matches(rule, namespace, namespace_labels, labels, host, container) then
      return rule.s == true
    end
  end
  return flow.e == true
end

local function as_table(value)
  if type(value) == "table" then
    return value
  end
  return EMPTY
end

local function copy_with_route(record, route)
  local copy = {}
  for key, value in pairs(record) do
    copy[key] = value
  end
  copy[ROUTE_KEY] = route
  return copy
end

function sluice_route(tag, timestamp, record)
  local now = os.time()
  -- `now < checked_at`: the clock went back; check now rather than wait for it.
  if now - checked_at >= CHECK_SECONDS or now < checked_at then
    checked_at = now
    local ok, err = load_routes()
    if not ok then
      print("[sluice] keeping the previous routing table: " .. tostring(err))
    end
  end

  local current = routes
  local kubernetes = as_table(record.kubernetes)
  local namespace = kubernetes.namespace_name
  if namespace == nil or (current.w ~= true and current.w[namespace] ~= true) then
    return -1, timestamp, record
  end
  local namespace_labels = as_table(as_table(record.kubernetes_namespace).labels)
  local labels = as_table(kubernetes.labels)
  local host = kubernetes.host
  local container = kubernetes.container_name

  -- Most records are taken by at most one flow: keep the first route in a local and build
  -- the list of records only for a second. The original record serves as the first copy, so
  -- a record k flows take costs k - 1 new tables plus the list (garbage the collector would
  -- otherwise chase through the whole routing table).
  local first = nil
  local out = nil
  for pass = 1, 2 do
    local flows
    if pass == 1 then
      flows = current.c
    else
      flows = current.n[namespace]
    end
    if flows ~= nil then
      for i = 1, #flows do
        local flow = flows[i]
        if flow_takes(flow, namespace, namespace_labels, labels, host, container) then
          if first == nil then
            first = flow.r
          elseif out == nil then
            out = { record, copy_with_route(record, flow.r) }
          else
            out[#out + 1] = copy_with_route(record, flow.r)
          end
        end
      end
    end
  end

  if first == nil then
    if current.d == nil then
      return -1, timestamp, record
    end
    first = current.d
  end
  record[ROUTE_KEY] = first
  if out == nil then
    return 2, timestamp, record
  end
  return 2, timestamp, out
end
