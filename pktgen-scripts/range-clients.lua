-- Pktgen-DPDK: many clients -> VIP:nodePort in range mode (nplb, issue 5).
--
-- Load at the Pktgen prompt (`load range-clients.lua`) or with `-f range-clients.lua`.
-- Edit the settings below for your bench; README.md in this folder has the
-- topology. Source addresses and source ports walk their ranges packet by
-- packet, so the appliance sees CLIENTS x SPORTS distinct 5-tuples toward one
-- VIP:nodePort.
--
-- UDP: every datagram to VIP:nodePort opens or hits a flow; this is the
-- established-flow forwarding rate. TCP: Pktgen's range packets carry ACK,
-- not SYN, so nplb (which only opens a connection on a SYN) refuses them as
-- `no_flow`: run it to measure the refusal path, or open the connections
-- first (syn-flood.lua with the same ranges, or TRex).

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

-- ----------------------------------------------------------------- settings
local TX_PORT     = "0"                   -- Pktgen port facing the appliance
local PROTO       = "udp"                 -- "udp" or "tcp"
local VIP         = "203.0.113.10"        -- forwarding.frontends[]
local NODE_PORT   = 30053                 -- the service's nodePort
local DUT_MAC     = "02:00:00:00:00:01"   -- the appliance port's MAC (dataplane.ports[].mac)
local SRC_MAC     = nil                   -- nil: the generator port's own MAC
local CLIENT_MIN  = "10.0.0.1"            -- clients: off-link, behind the appliance's gateway
local CLIENT_MAX  = "10.0.15.254"
local SPORT_MIN   = 1024
local SPORT_MAX   = 1279                  -- 256 source ports per client
local PKT_SIZE    = 64                    -- frame size with FCS
local RATE        = 100                   -- percent of line rate
local SECONDS     = 30                    -- 0: leave it running

-- ----------------------------------------------------------------- setup
local function range4(field, start, inc, min, max)
  field(TX_PORT, "start", start)
  field(TX_PORT, "inc", inc)
  field(TX_PORT, "min", min)
  field(TX_PORT, "max", max)
end

pktgen.stop(TX_PORT)
pktgen.set_type(TX_PORT, "ipv4")
pktgen.set_proto(TX_PORT, PROTO)
pktgen.set(TX_PORT, "size", PKT_SIZE)
pktgen.set(TX_PORT, "rate", RATE)
pktgen.set(TX_PORT, "count", 0)           -- send until stopped

pktgen.range.dst_mac(TX_PORT, "start", DUT_MAC)
if SRC_MAC then pktgen.range.src_mac(TX_PORT, "start", SRC_MAC) end
pktgen.range.ip_proto(TX_PORT, PROTO)

range4(pktgen.range.dst_ip, VIP, "0.0.0.0", VIP, VIP)
range4(pktgen.range.src_ip, CLIENT_MIN, "0.0.0.1", CLIENT_MIN, CLIENT_MAX)
range4(pktgen.range.dst_port, NODE_PORT, 0, NODE_PORT, NODE_PORT)
range4(pktgen.range.src_port, SPORT_MIN, 1, SPORT_MIN, SPORT_MAX)
range4(pktgen.range.pkt_size, PKT_SIZE, 0, PKT_SIZE, PKT_SIZE)
if pktgen.range.ttl then range4(pktgen.range.ttl, 64, 0, 64, 64) end

pktgen.set_range(TX_PORT, "on")
pktgen.page("range")

-- ----------------------------------------------------------------- run
printf("range-clients: %s %s-%s ports %d-%d -> %s:%d, %d%% rate\n", PROTO,
       CLIENT_MIN, CLIENT_MAX, SPORT_MIN, SPORT_MAX, VIP, NODE_PORT, RATE)
pktgen.clr()
pktgen.start(TX_PORT)
if SECONDS > 0 then
  pktgen.delay(SECONDS * 1000)
  pktgen.stop(TX_PORT)
  pktgen.delay(500)
  local s = pktgen.portStats(TX_PORT, "port")[tonumber(TX_PORT)]
  printf("range-clients: sent %d packets in %d s (%.2f Mpps offered), %d received back on port %s\n",
         s.opackets, SECONDS, s.opackets / SECONDS / 1e6, s.ipackets, TX_PORT)
end
