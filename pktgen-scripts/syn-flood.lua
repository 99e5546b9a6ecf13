-- Pktgen-DPDK: TCP SYN flood toward VIP:nodePort from random sources (nplb, issue 5).
--
-- Every frame is a SYN from a random client address and source port, so
-- nearly every packet misses the flow table and opens a connection (Maglev,
-- SNAT port, two-entry insert): the new-flow rate. Watch nplb's counters
-- (`nplbctl get stats`, GET /v1/stats): flows_created, and the refusals
-- (flow_table_full, snat_exhausted) once the table or the SNAT ports run out;
-- established flows must keep their rate meanwhile (run range-clients.lua or
-- a TRex UDP stream on a second port at the same time).
--
-- Random fields use Pktgen's documented `rnd` bit masks (32 characters per
-- 32-bit word: 0 clear, 1 set, X random, . unchanged), written at byte
-- offsets into an untagged Ethernet/IPv4/TCP frame without IP options:
--   26 IPv4 source   34 TCP source port (and the destination port, kept)
--   46 TCP data offset / flags / window: flags forced to 0x02 (SYN only)

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

-- ----------------------------------------------------------------- settings
local TX_PORT    = "0"
local VIP        = "203.0.113.10"
local NODE_PORT  = 30080                  -- a TCP service's nodePort
local DUT_MAC    = "02:00:00:00:00:01"
local CLIENT_NET = "10.0.0.1/8"           -- base source; the low 24 bits are randomised
local PKT_SIZE   = 64
local RATE       = 100                    -- percent of line rate
local SECONDS    = 30

-- ----------------------------------------------------------------- setup
pktgen.stop(TX_PORT)
pktgen.set_range(TX_PORT, "off")
pktgen.set_type(TX_PORT, "ipv4")
pktgen.set_proto(TX_PORT, "tcp")
pktgen.set_mac(TX_PORT, "dst", DUT_MAC)
pktgen.set_ipaddr(TX_PORT, "dst", VIP)
pktgen.set_ipaddr(TX_PORT, "src", CLIENT_NET)
pktgen.set(TX_PORT, "dport", NODE_PORT)
pktgen.set(TX_PORT, "sport", 1024)
pktgen.set(TX_PORT, "size", PKT_SIZE)
pktgen.set(TX_PORT, "rate", RATE)
pktgen.set(TX_PORT, "count", 0)

--                           byte 26        27        28        29
pktgen.rnd(TX_PORT, 0, 26, "........XXXXXXXXXXXXXXXXXXXXXXXX")   -- 10.x.y.z
--                           sport (random, >= 1024)   dport (kept)
pktgen.rnd(TX_PORT, 1, 34, "XXXXX1XXXXXXXXXX................")
--                           data offset  flags      window
pktgen.rnd(TX_PORT, 2, 46, "........00000010................")  -- SYN, nothing else

-- Random mode must be on for the masks to apply: the Lua call where this
-- Pktgen has one, else the CLI command.
if pktgen.random then
  pktgen.random(TX_PORT, "on")
else
  printf("syn-flood: now type `enable %s random` at the Pktgen prompt\n", TX_PORT)
  pktgen.pause("waiting 5 s\n", 5000)
end

-- ----------------------------------------------------------------- run
printf("syn-flood: SYN from %s (random /8) -> %s:%d at %d%% rate\n", CLIENT_NET, VIP, NODE_PORT, RATE)
pktgen.clr()
pktgen.start(TX_PORT)
if SECONDS > 0 then
  pktgen.delay(SECONDS * 1000)
  pktgen.stop(TX_PORT)
  pktgen.delay(500)
  local s = pktgen.portStats(TX_PORT, "port")[tonumber(TX_PORT)]
  printf("syn-flood: sent %d SYNs in %d s (%.2f Mpps offered); compare flows_created in nplb's counters\n",
         s.opackets, SECONDS, s.opackets / SECONDS / 1e6)
end
