// Page regions for the flow tables: zeroed, writable, honest about where
// they came from, and never silently on huge pages when told not to be.
#include "dataplane/huge_pages.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "dataplane/flow_table.hpp"

namespace nplb {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

struct PolicyGuard {
  explicit PolicyGuard(PagePolicy p) { set_page_policy(p); }
  ~PolicyGuard() { set_page_policy(PagePolicy::any); }
};

bool all_zero(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i)
    if (b[i]) return false;
  return true;
}

// The kernel's count of huge pages mapped into this process, in KiB.
uint64_t process_kib(const char* key) {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::strtoull(line.c_str() + std::strlen(key), nullptr, 10);
  return 0;
}

TEST(PageRegion, SmallRegionsStayOnPlainPages) {
  PageRegion r(64 * 1024);
  ASSERT_NE(r.data(), nullptr);
  EXPECT_EQ(r.backing(), PageBacking::normal);
  EXPECT_TRUE(all_zero(r.data(), 64 * 1024));
}

TEST(PageRegion, NormalOnlyMeansNormal) {
  PolicyGuard g(PagePolicy::normal_only);
  PageRegion r(8 * kMiB);
  EXPECT_EQ(r.backing(), PageBacking::normal);
  EXPECT_TRUE(all_zero(r.data(), 8 * kMiB));
  std::memset(r.data(), 0xab, 8 * kMiB);  // writable throughout
}

TEST(PageRegion, BigRegionsGetHugePagesWhenTheKernelHasThem) {
  uint64_t hugetlb_before = process_kib("Private_Hugetlb:");
  PageRegion r(8 * kMiB);
  ASSERT_NE(r.data(), nullptr);
  if (r.backing() != PageBacking::normal) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data()) % (2 * kMiB), 0u) << "huge pages are 2 MiB aligned";
  }
  EXPECT_TRUE(all_zero(r.data(), 8 * kMiB));
  std::memset(r.data(), 0x5a, 8 * kMiB);
  // What the region says is what the kernel mapped.
  if (r.backing() == PageBacking::hugetlb) {
    EXPECT_GE(process_kib("Private_Hugetlb:"), hugetlb_before + 8 * 1024);
  } else {
    std::printf("reserved pool empty here: region on %s pages\n", page_backing_name(r.backing()));
  }
}

TEST(PageRegion, NoHugetlbSkipsTheReservedPool) {
  PolicyGuard g(PagePolicy::no_hugetlb);
  PageRegion r(8 * kMiB);
  EXPECT_NE(r.backing(), PageBacking::hugetlb);
  EXPECT_TRUE(all_zero(r.data(), 8 * kMiB));
}

TEST(PageArray, ConstructsEveryElementAndMoves) {
  struct Counted {
    uint32_t value = 7;
  };
  PageArray<Counted> a(1000);
  ASSERT_EQ(a.size(), 1000u);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].value, 7u);
  a[999].value = 9;
  PageArray<Counted> b;
  b = std::move(a);
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(b[999].value, 9u);
  EXPECT_EQ(a.size(), 0u);
}

TEST(PageArray, FlowTableReportsItsBacking) {
  FlowTable small(16);
  EXPECT_EQ(small.page_backing(), PageBacking::normal) << "a few KiB: plain pages";
  PolicyGuard g(PagePolicy::normal_only);
  FlowTable big(100'000);
  EXPECT_EQ(big.page_backing(), PageBacking::normal);
}

}  // namespace
}  // namespace nplb
