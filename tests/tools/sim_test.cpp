// parley-sim's oracle and histogram, alone (no server, no clients): the
// verdicts the simulator prints must be right before its figures mean
// anything.

#include "tools/sim/histogram.hpp"
#include "tools/sim/ledger.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

using namespace parley::sim;

namespace {

constexpr uint8_t sent = 0x01;
constexpr uint8_t delivered_status = 0x02;
constexpr uint8_t failed = 0x84; // expired

} // namespace

TEST_CASE("payload header round-trips and pads to the payload size") {
  payload_header h{7, 9, 123456789012ull, -5};
  auto p = h.encode(100);
  CHECK(p.size() == 100);
  auto back = payload_header::decode(p);
  REQUIRE(back);
  CHECK(back->from == 7);
  CHECK(back->to == 9);
  CHECK(back->k == 123456789012ull);
  CHECK(back->sched_ns == -5);
  CHECK_FALSE(payload_header::decode(p.substr(0, 23)));
  CHECK(h.encode(10).size() == payload_header::size);
}

TEST_CASE("a clean run: everything sent is delivered once, in order") {
  ledger l{true};
  for (int i = 0; i < 5; ++i) {
    auto k = l.next(1, 2);
    CHECK(k == static_cast<uint64_t>(i + 1));
    l.status(1, 2, k, sent);
    CHECK(l.delivered(1, 2, k) == delivery::first);
  }
  CHECK(l.outstanding() == 5); // receipts missing
  for (uint64_t k = 1; k <= 5; ++k)
    l.status(1, 2, k, delivered_status);
  CHECK(l.outstanding() == 0);
  auto t = l.finish();
  CHECK(t.attempted == 5);
  CHECK(t.sent == 5);
  CHECK(t.delivered == 5);
  CHECK(t.receipts == 5);
  CHECK(t.lost + t.duplicated + t.reordered + t.unexpected + t.pending == 0);
}

TEST_CASE("lost, duplicated, reordered, unexpected and pending are counted") {
  ledger l{false};
  for (int i = 0; i < 6; ++i)
    l.status(3, 4, l.next(3, 4), sent);
  CHECK(l.delivered(3, 4, 1) == delivery::first);
  CHECK(l.delivered(3, 4, 3) == delivery::first);
  CHECK(l.delivered(3, 4, 2) == delivery::reordered);
  CHECK(l.delivered(3, 4, 3) == delivery::duplicate);
  CHECK(l.delivered(3, 4, 99) == delivery::unexpected); // never sent
  CHECK(l.delivered(4, 3, 1) == delivery::unexpected);  // other direction
  // 4 and 5 never arrive: lost (they were SENT). 6: neither SENT nor
  // delivered: pending.
  auto k7 = l.next(3, 4);
  l.status(3, 4, k7, failed);
  CHECK(l.delivered(3, 4, k7) == delivery::unexpected); // failed yet delivered
  auto k8 = l.next(3, 4);                               // never got any status
  (void)k8;
  auto t = l.finish();
  CHECK(t.lost == 3); // 4, 5, 6
  CHECK(t.duplicated == 1);
  CHECK(t.reordered == 1);
  CHECK(t.unexpected == 3);
  CHECK(t.failed == 1);
  CHECK(t.pending == 1); // k8
}

TEST_CASE("a refused send does not count") {
  ledger l{true};
  auto k = l.next(1, 2);
  l.refused(1, 2, k);
  CHECK(l.outstanding() == 0);
  CHECK(l.finish().attempted == 0);
  CHECK(l.delivered(1, 2, k) == delivery::unexpected);
}

TEST_CASE("the ledger takes reports from many threads") {
  ledger l{false};
  constexpr uint32_t users = 8;
  constexpr int per = 2000;
  std::vector<std::thread> ts;
  for (uint32_t u = 0; u < users; ++u)
    ts.emplace_back([&, u] {
      for (int i = 0; i < per; ++i) {
        auto to = (u + 1) % users;
        auto k = l.next(u, to);
        l.status(u, to, k, sent);
        l.delivered(u, to, k);
      }
    });
  for (auto& t : ts)
    t.join();
  auto t = l.finish();
  CHECK(t.delivered == users * per);
  CHECK(t.lost + t.duplicated + t.reordered + t.pending == 0);
}

TEST_CASE("histogram: buckets keep values within 1/32, quantiles bound them") {
  for (uint64_t v : {0ull, 1ull, 31ull, 32ull, 33ull, 1000ull, 123456789ull,
                     ~0ull >> 1, ~0ull}) {
    auto i = histogram::index_of(v);
    REQUIRE(i < histogram::bucket_count);
    auto up = histogram::upper_of(i);
    CHECK(up >= v);
    CHECK(static_cast<double>(up - v) <= static_cast<double>(v) / 32.0 + 1.0);
    if (i > 0)
      CHECK(histogram::upper_of(i - 1) < v);
  }
  histogram h;
  CHECK(h.quantile(0.5) == 0);
  std::vector<uint64_t> vals;
  std::mt19937_64 rng{1};
  for (int i = 0; i < 100000; ++i)
    vals.push_back(rng() % 10'000'000);
  for (auto v : vals)
    h.record(v);
  std::sort(vals.begin(), vals.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    auto exact = vals[static_cast<size_t>(q * vals.size())];
    auto got = h.quantile(q);
    CHECK(got >= exact);
    CHECK(static_cast<double>(got) <= static_cast<double>(exact) * 1.04 + 1);
  }
  CHECK(h.quantile(1.0) == vals.back());
  CHECK(h.max() == vals.back());
  CHECK(h.count() == vals.size());
}
