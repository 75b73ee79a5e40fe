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

-- A flow list is one flat array (render/edge.rs, write_flows): few tables for the collector
-- to mark on every cycle. A flow is `route, takes-unmatched, end`, then its rules, each
-- `select, end, fields...`; a field is `kind, count, values` (maps as key, value pairs). An
-- `end` is the index just past its flow or rule.
local NAMESPACES, CONTAINERS, HOSTS, LABELS = 1, 2, 3, 4

local function has_value(list, from, to, value)
  for j = from, to do
    if list[j] == value then
      return true
    end
  end
  return false
end

local function has_pairs(list, from, to, have)
  for j = from, to, 2 do
    if have[list[j]] ~= list[j + 1] then
      return false
    end
  end
  return true
end

-- Every field of the rule whose fields run from i to before stop holds: lists need any one
-- value equal, maps every pair present.
local function rule_matches(list, i, stop, namespace, namespace_labels, labels, host, container)
  while i < stop do
    local kind = list[i]
    local from = i + 2
    local to = i + 1 + list[i + 1]
    local holds
    if kind == NAMESPACES then
      holds = has_value(list, from, to, namespace)
    elseif kind == CONTAINERS then
      holds = has_value(list, from, to, container)
    elseif kind == HOSTS then
      holds = has_value(list, from, to, host)
    elseif kind == LABELS then
      holds = has_pairs(list, from, to, labels)
    else
      holds = has_pairs(list, from, to, namespace_labels)
    end
    if not holds then
      return false
    end
    i = to + 1
  end
  return true
end

-- Whether the flow starting at i takes the record (the first matching rule decides, else
-- its takes-unmatched flag), and where the next flow starts.
local function flow_takes(list, i, namespace, namespace_labels, labels, host, container)
  local stop = list[i + 2]
  local rule = i + 3
  while rule < stop do
    local rule_end = list[rule + 1]
    if rule_end <= rule then
      -- Only a damaged table gets here; stepping on guarantees the loops end.
      return false, stop
    end
    if rule_matches(list, rule + 2, rule_end, namespace, namespace_labels, labels, host, container) then
      return list[rule] == true, stop
    end
    rule = rule_end
  end
  return list[i + 1] == true, stop
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
      local i = 1
      local size = #flows
      while i <= size do
        local route = flows[i]
        local takes, next_flow = flow_takes(flows, i, namespace, namespace_labels, labels, host, container)
        if takes then
          if first == nil then
            first = route
          elseif out == nil then
            out = { record, copy_with_route(record, route) }
          else
            out[#out + 1] = copy_with_route(record, route)
          end
        end
        if next_flow <= i then
          break
        end
        i = next_flow
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
