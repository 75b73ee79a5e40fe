-- Rendered by Sluice. The agent's half of the routing contract (docs/routing.md): for each
-- record, the flows that take it, else the default flow, else nobody. A record nobody takes
-- is dropped here; a record k flows take leaves as k records, each carrying its flow's route
-- under ROUTE_KEY for the rewrite_tag filter that follows. The code is fixed; the routing
-- table is data in ROUTES_DIR: an index (watched namespaces, default route) and SLOTS slot
-- files holding the flows, each re-read when its first line (its revision) changes, so a
-- Flow edit never restarts the agent.
--
-- A decision depends only on the record's namespace, namespace labels, labels, host and
-- container and on the table, so it is made once per container (the tag) and kept with the
-- values it was made from; a record whose values differ, or a changed table, decides again.

local ROUTES_DIR = "@ROUTES_DIR@"
local INDEX_FILE = "@INDEX_FILE@"
local SLOTS = @SLOTS@
local ROUTE_KEY = "@ROUTE_KEY@"
local CHECK_SECONDS = 5
-- Containers a node runs at once are far fewer; past this the cache starts over.
local CACHE_LIMIT = 8192

local index = nil
local index_revision = nil
local slots = {}
local slot_revisions = {}
local uses_namespace_labels = false
local checked_at = 0
local cache = {}
local cached = 0
local EMPTY = {}
local NO_ROUTES = {}

local function first_line(path)
  local file = io.open(path, "r")
  if file == nil then
    return nil
  end
  local line = file:read("*l")
  file:close()
  return line
end

local function slot_path(slot)
  return ROUTES_DIR .. "/" .. string.format("slot-%02d.lua", slot)
end

-- A table file is a Lua chunk run with an empty environment: it can build tables and
-- nothing else, whatever it contains. Returns the table and its first line, or nil and why.
local function load_table(path, line)
  local chunk, err = loadfile(path)
  if chunk == nil then
    return nil, err
  end
  setfenv(chunk, {})
  local ok, loaded = pcall(chunk)
  if not ok then
    return nil, tostring(loaded)
  end
  if type(loaded) ~= "table" then
    return nil, "not a routing table"
  end
  return loaded
end

local function valid_index(t)
  return t.w == true or type(t.w) == "table"
end

local function valid_slot(t)
  return type(t.c) == "table" and type(t.n) == "table"
end

-- Re-reads every file whose first line changed. A file that cannot be read or loaded keeps
-- the previous version in force and is reported; each slot holds whole flows, so a pod that
-- sees some slots new and others old (the kubelet updates Secrets one at a time) routes each
-- flow by one version of it. Returns false and the reasons when something failed.
local function load_routes()
  local problems = {}
  local changed = false
  local line = first_line(ROUTES_DIR .. "/" .. INDEX_FILE)
  if line == nil then
    problems[#problems + 1] = "cannot read " .. INDEX_FILE
  elseif line ~= index_revision then
    local loaded, err = load_table(ROUTES_DIR .. "/" .. INDEX_FILE)
    if loaded ~= nil and valid_index(loaded) then
      index = loaded
      -- A file swapped in between the two reads is newer than `line`; the next check sees
      -- a different first line and loads it again, which is harmless.
      index_revision = line
      changed = true
    else
      problems[#problems + 1] = INDEX_FILE .. ": " .. tostring(err or "not a routing table")
    end
  end
  for slot = 1, SLOTS do
    local path = slot_path(slot)
    local slot_line = first_line(path)
    if slot_line == nil then
      problems[#problems + 1] = "cannot read " .. path
    elseif slot_line ~= slot_revisions[slot] then
      local loaded, err = load_table(path)
      if loaded ~= nil and valid_slot(loaded) then
        slots[slot] = loaded
        slot_revisions[slot] = slot_line
        changed = true
      else
        problems[#problems + 1] = path .. ": " .. tostring(err or "not a routing table")
      end
    end
  end
  if changed then
    uses_namespace_labels = false
    for slot = 1, SLOTS do
      if slots[slot] ~= nil and slots[slot].l == true then
        uses_namespace_labels = true
      end
    end
    cache = {}
    cached = 0
  end
  if #problems > 0 then
    return false, table.concat(problems, "; ")
  end
  return true
end

do
  local ok, err = load_routes()
  if not ok then
    -- Without a complete table nothing can be routed: fail the filter's start-up, visibly.
    error("sluice: no routing table: " .. tostring(err))
  end
end

-- A flow list is one flat array (render/edge.rs, flow_line): few tables for the collector
-- to mark on every cycle. A flow is `route, takes-unmatched, length`, then its rules, each
-- `select, length, fields...`; a field is `kind, count, values` (maps as key, value pairs). A
-- `length` counts the slots of its flow or rule.
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
  local stop = i + list[i + 2]
  local rule = i + 3
  while rule < stop do
    local rule_end = rule + list[rule + 1]
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

local function add_takers(routes, flows, namespace, namespace_labels, labels, host, container)
  if flows == nil then
    return
  end
  local i = 1
  local size = #flows
  while i <= size do
    local takes, next_flow = flow_takes(flows, i, namespace, namespace_labels, labels, host, container)
    if takes then
      routes[#routes + 1] = flows[i]
    end
    if next_flow <= i then
      break
    end
    i = next_flow
  end
end

-- The routes of a record with these values: the ClusterFlows and the Flows of its own
-- namespace that take it, else the default flow, else none.
local function decide(namespace, namespace_labels, labels, host, container)
  local routes = {}
  for slot = 1, SLOTS do
    local t = slots[slot]
    add_takers(routes, t.c, namespace, namespace_labels, labels, host, container)
    add_takers(routes, t.n[namespace], namespace, namespace_labels, labels, host, container)
  end
  if #routes == 0 then
    if index.d == nil then
      return NO_ROUTES
    end
    routes[1] = index.d
  end
  return routes
end

local function as_table(value)
  if type(value) == "table" then
    return value
  end
  return EMPTY
end

-- A copy of a string map and its size, to tell later whether a record's map is the same.
local function snapshot(map)
  local copy = {}
  local count = 0
  for key, value in pairs(map) do
    copy[key] = value
    count = count + 1
  end
  return copy, count
end

local function same(map, copy, count)
  local seen = 0
  for key, value in pairs(map) do
    if copy[key] ~= value then
      return false
    end
    seen = seen + 1
  end
  return seen == count
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

  local kubernetes = as_table(record.kubernetes)
  local namespace = kubernetes.namespace_name
  if namespace == nil or (index.w ~= true and index.w[namespace] ~= true) then
    return -1, timestamp, record
  end
  local labels = as_table(kubernetes.labels)
  local host = kubernetes.host
  local container = kubernetes.container_name
  local namespace_labels = EMPTY
  if uses_namespace_labels then
    namespace_labels = as_table(as_table(record.kubernetes_namespace).labels)
  end

  local entry = cache[tag]
  if entry == nil or entry.namespace ~= namespace or entry.host ~= host
    or entry.container ~= container or not same(labels, entry.labels, entry.label_count)
    or not same(namespace_labels, entry.namespace_labels, entry.namespace_label_count) then
    if entry == nil then
      if cached >= CACHE_LIMIT then
        cache = {}
        cached = 0
      end
      cached = cached + 1
    end
    entry = {
      namespace = namespace,
      host = host,
      container = container,
      routes = decide(namespace, namespace_labels, labels, host, container),
    }
    entry.labels, entry.label_count = snapshot(labels)
    entry.namespace_labels, entry.namespace_label_count = snapshot(namespace_labels)
    cache[tag] = entry
  end

  local routes = entry.routes
  local count = #routes
  if count == 0 then
    return -1, timestamp, record
  end
  -- The original record serves as the first copy: a record k flows take costs k - 1 new
  -- tables plus the list.
  record[ROUTE_KEY] = routes[1]
  if count == 1 then
    return 2, timestamp, record
  end
  local out = { record }
  for i = 2, count do
    out[i] = copy_with_route(record, routes[i])
  end
  return 2, timestamp, out
end
