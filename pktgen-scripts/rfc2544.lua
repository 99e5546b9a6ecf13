-- Pktgen-DPDK: RFC 2544 throughput, a binary search for the zero-loss rate
-- through nplb (issue 5).
--
-- Topology (README.md): Pktgen port TX_PORT sends UDP from many clients to
-- VIP:nodePort; nplb translates and forwards to the nodes, whose static
-- neighbour entries point at Pktgen port RX_PORT, so everything nplb
-- forwards arrives there. A trial sends at a rate for TRIAL_MS, waits for the
-- queues to drain, and compares what TX_PORT sent with what RX_PORT got.
-- Loss above LOSS_TOLERANCE (a fraction; 0 is RFC 2544's zero loss) lowers
-- the upper bound, otherwise the lower bound rises; the search stops when
-- the bounds are closer than PRECISION percent, and the best passing rate is
-- confirmed by one longer trial.
--
-- Warm up first: the first packets of each flow open it (a miss, then a
-- hit), so the script runs one untimed WARMUP_MS trial at a low rate.

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

-- ----------------------------------------------------------------- settings
local TX_PORT        = "0"
local RX_PORT        = "1"
local VIP            = "203.0.113.10"
local NODE_PORT      = 30053
local DUT_MAC        = "02:00:00:00:00:01"
local CLIENT_MIN     = "10.0.0.1"
local CLIENT_MAX     = "10.0.3.254"
local SPORT_MIN      = 1024
local SPORT_MAX      = 1087
local SIZES          = {64, 128, 256, 512, 1024, 1280, 1518}
local TRIAL_MS       = 10000
local CONFIRM_MS     = 30000     -- 0: no confirmation trial
local DRAIN_MS       = 2000
local WARMUP_MS      = 3000
local LOSS_TOLERANCE = 0.0       -- fraction of sent packets
local PRECISION      = 0.5       -- percent of line rate
local MAX_TRIALS     = 20
local LOG_FILE       = "nplb-rfc2544.txt"

-- ----------------------------------------------------------------- helpers
local log = assert(io.open(LOG_FILE, "a"))

local function report(fmt, ...)
  local line = string.format(fmt, ...)
  print(line)
  log:write(line, "\n")
  log:flush()
end

local function range4(field, port, start, inc, min, max)
  field(port, "start", start)
  field(port, "inc", inc)
  field(port, "min", min)
  field(port, "max", max)
end

local function setup()
  pktgen.stop("all")
  pktgen.set_type(TX_PORT, "ipv4")
  pktgen.set_proto(TX_PORT, "udp")
  pktgen.range.ip_proto(TX_PORT, "udp")
  pktgen.range.dst_mac(TX_PORT, "start", DUT_MAC)
  range4(pktgen.range.dst_ip, TX_PORT, VIP, "0.0.0.0", VIP, VIP)
  range4(pktgen.range.src_ip, TX_PORT, CLIENT_MIN, "0.0.0.1", CLIENT_MIN, CLIENT_MAX)
  range4(pktgen.range.dst_port, TX_PORT, NODE_PORT, 0, NODE_PORT, NODE_PORT)
  range4(pktgen.range.src_port, TX_PORT, SPORT_MIN, 1, SPORT_MIN, SPORT_MAX)
  pktgen.set_range(TX_PORT, "on")
end

local function port_stats(port)
  return pktgen.portStats(port, "port")[tonumber(port)]
end

-- One trial: returns sent, received, loss fraction, offered Mpps.
local function trial(size, rate, ms)
  pktgen.set(TX_PORT, "size", size)
  range4(pktgen.range.pkt_size, TX_PORT, size, 0, size, size)
  pktgen.set(TX_PORT, "rate", rate)
  pktgen.set(TX_PORT, "count", 0)
  pktgen.clr()
  pktgen.delay(200)
  pktgen.start(TX_PORT)
  pktgen.delay(ms)
  pktgen.stop(TX_PORT)
  pktgen.delay(DRAIN_MS)
  local sent = port_stats(TX_PORT).opackets
  local got = port_stats(RX_PORT).ipackets
  local loss = 0
  if sent > 0 then loss = (sent - got) / sent end
  if loss < 0 then loss = 0 end   -- stray frames (ARP, ...) on the RX port
  return sent, got, loss, sent / (ms / 1000) / 1e6
end

local function search(size)
  local lo, hi = 0.0, 100.0
  local rate = 100.0
  local best = nil
  trial(size, 1, WARMUP_MS)       -- open the flows
  for n = 1, MAX_TRIALS do
    local sent, got, loss, mpps = trial(size, rate, TRIAL_MS)
    local pass = loss <= LOSS_TOLERANCE
    report("[%4dB] trial %2d rate %6.2f%%  tx %12d  rx %12d  loss %.6f%%  %.3f Mpps  %s",
           size, n, rate, sent, got, loss * 100, mpps, pass and "pass" or "FAIL")
    if pass then
      lo = rate
      best = {rate = rate, mpps = mpps}
      if rate >= 100 then break end
    else
      hi = rate
    end
    if hi - lo < PRECISION then break end
    rate = (lo + hi) / 2
  end
  if best and CONFIRM_MS > 0 then
    local sent, got, loss, mpps = trial(size, best.rate, CONFIRM_MS)
    local pass = loss <= LOSS_TOLERANCE
    report("[%4dB] confirm rate %6.2f%%  tx %12d  rx %12d  loss %.6f%%  %s",
           size, best.rate, sent, got, loss * 100, pass and "pass" or "FAIL")
    if not pass then best = nil end
  end
  return best
end

-- ----------------------------------------------------------------- run
report("nplb RFC 2544 throughput: %s -> %s:%d, clients %s-%s, ports %d-%d, loss tolerance %.4f%%",
       TX_PORT, VIP, NODE_PORT, CLIENT_MIN, CLIENT_MAX, SPORT_MIN, SPORT_MAX, LOSS_TOLERANCE * 100)
setup()
local results = {}
for _, size in ipairs(SIZES) do
  results[#results + 1] = {size = size, best = search(size)}
end
report("%-6s %-12s %-10s", "size", "rate (%)", "Mpps")
for _, r in ipairs(results) do
  if r.best then
    report("%-6d %-12.2f %-10.3f", r.size, r.best.rate, r.best.mpps)
  else
    report("%-6d %-12s %-10s", r.size, "none", "-")
  end
end
log:close()
