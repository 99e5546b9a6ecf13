// How long the control thread naps between its polls.
//
// 100 us while there is work: a worker's event (a neighbour it learned, a
// next hop it wants), a frame to or from the kernel, or an ARP request out
// in the last 10 ms, so a learned neighbour reaches the table ahead of the
// traffic waiting for it. Each poll that finds nothing doubles the nap, up
// to 1 ms: an idle control thread then wakes 1000 times a second instead of
// ~6500 (at 100 us naps it took ~9% of a CPU in wakeups and polls on the
// benchmark VM, a CPU the appliance may share with other work). The API,
// health checks and file watching answer within the longest nap.
#pragma once

#include <algorithm>
#include <cstdint>

namespace nplb {

class ControlNap {
 public:
  static constexpr uint32_t kShortUs = 100;
  static constexpr uint32_t kLongUs = 1000;

  // The nap after a poll that did (`worked`) or did not find work.
  uint32_t next(bool worked) {
    nap_us_ = worked ? kShortUs : std::min(nap_us_ * 2, kLongUs);
    return nap_us_;
  }

 private:
  uint32_t nap_us_ = kShortUs;
};

}  // namespace nplb
