// Page regions for the flow tables: zeroed, writable, honest about where
// they came from, and never silently on huge pages when told not to be.
#include "dataplane/huge_pages.hpp"

#include <gtest/gtest.h>
#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

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

uint64_t free_gigabyte_pages() {
  std::ifstream in("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages");
  uint64_t n = 0;
  in >> n;
  return in ? n : 0;
}

// A region of 1 GiB or more goes on the reserved 1 GiB pool when it has a
// free page (1 GiB aligned, and the kernel counts it as this process's
// hugetlb memory); otherwise on whatever a smaller region would get.
TEST(PageRegion, GigabyteRegionsTakeGigabytePagesWhenReserved) {
  constexpr size_t kGiB = 1024 * kMiB;
  uint64_t free_before = free_gigabyte_pages();
  uint64_t hugetlb_before = process_kib("Private_Hugetlb:");
  PageRegion r(kGiB);
  ASSERT_NE(r.data(), nullptr);
  auto* bytes = static_cast<uint8_t*>(r.data());
  EXPECT_TRUE(all_zero(bytes, kMiB));
  EXPECT_TRUE(all_zero(bytes + kGiB - kMiB, kMiB));
  bytes[0] = 1;
  bytes[kGiB - 1] = 1;  // writable to the last byte
  if (free_before >= 1) {
    EXPECT_EQ(r.backing(), PageBacking::hugetlb_1g);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.data()) % kGiB, 0u);
    EXPECT_GE(process_kib("Private_Hugetlb:"), hugetlb_before + kGiB / 1024);
    EXPECT_EQ(free_gigabyte_pages(), free_before - 1);
  } else {
    EXPECT_NE(r.backing(), PageBacking::hugetlb_1g);
    std::printf("no 1 GiB page reserved here: a 1 GiB region on %s pages\n", page_backing_name(r.backing()));
  }
}

TEST(PageRegion, NoHugetlbSkipsTheReservedPool) {
  PolicyGuard g(PagePolicy::no_hugetlb);
  PageRegion r(8 * kMiB);
  EXPECT_FALSE(is_reserved_pool(r.backing()));
  EXPECT_TRUE(all_zero(r.data(), 8 * kMiB));
}

// The node of the page holding `at` (get_mempolicy with MPOL_F_NODE |
// MPOL_F_ADDR), or -1 when the kernel cannot say.
int node_of(void* at) {
  int node = -1;
  if (syscall(SYS_get_mempolicy, &node, nullptr, 0, at, MPOL_F_NODE | MPOL_F_ADDR) != 0) return -1;
  return node;
}

TEST(PageRegion, PagesComeFromTheNodeAsked) {
  // This machine may have one node: node 0 is then the only answer, but the
  // bind-then-touch path (no MAP_POPULATE) still has to give zeroed,
  // populated pages of the right kind.
  for (PagePolicy policy : {PagePolicy::any, PagePolicy::no_hugetlb, PagePolicy::normal_only}) {
    PolicyGuard g(policy);
    PageRegion r(8 * kMiB, 0);
    ASSERT_NE(r.data(), nullptr);
    EXPECT_TRUE(all_zero(r.data(), 8 * kMiB));
    auto* bytes = static_cast<uint8_t*>(r.data());
    for (size_t off = 0; off < 8 * kMiB; off += 2 * kMiB) {
      int node = node_of(bytes + off);
      if (node >= 0) {
        EXPECT_EQ(node, 0) << "offset " << off << ", " << page_backing_name(r.backing());
      }
    }
  }
  // A table placed on a node works like any other.
  FlowTable t(100'000, 0);
  FlowEntry original, reply;
  original.key = FlowKeyV4{0x0100000a, 0x0a7100cb, 0x3412, 0x5a75, 6, {0, 0, 0}};
  reply.key = FlowKeyV4{0x0b6433c6, 0x026433c6, 0x5a75, 0x0004, 6, {0, 0, 0}};
  uint32_t o = t.insert_connection(original, flow_key_hash(original.key), reply, flow_key_hash(reply.key),
                                   FlowState::established, 1);
  ASSERT_NE(o, FlowTable::kNoEntry);
  EXPECT_EQ(t.lookup(original.key, flow_key_hash(original.key)), o);
  EXPECT_EQ(t.lookup(reply.key, flow_key_hash(reply.key)), t.entry(o).partner);
  if (node_of(&t.entry(o)) >= 0) {
    EXPECT_EQ(node_of(&t.entry(o)), 0);
  }
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
