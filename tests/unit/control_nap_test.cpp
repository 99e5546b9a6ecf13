// The control thread's nap: short while there is work, doubling to 1 ms
// while idle, short again at the first sign of work.
#include "control/control_nap.hpp"

#include <gtest/gtest.h>

namespace nplb {
namespace {

TEST(ControlNap, DoublesWhileIdleUpToTheLongNap) {
  ControlNap nap;
  EXPECT_EQ(nap.next(false), 200u);
  EXPECT_EQ(nap.next(false), 400u);
  EXPECT_EQ(nap.next(false), 800u);
  EXPECT_EQ(nap.next(false), ControlNap::kLongUs);
  EXPECT_EQ(nap.next(false), ControlNap::kLongUs);
}

TEST(ControlNap, WorkBringsTheShortNapBackAtOnce) {
  ControlNap nap;
  for (int i = 0; i < 10; ++i) nap.next(false);
  EXPECT_EQ(nap.next(true), ControlNap::kShortUs);
  EXPECT_EQ(nap.next(true), ControlNap::kShortUs) << "stays short while work keeps coming";
  EXPECT_EQ(nap.next(false), 2 * ControlNap::kShortUs);
}

}  // namespace
}  // namespace nplb
