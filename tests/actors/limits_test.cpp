// The server's rate limits, driven with a hand-made clock.

#include "actors/server/limits.hpp"

#include <doctest/doctest.h>

using namespace parley::srv;
using namespace std::chrono;
using verdict = token_bucket::verdict;

namespace {

limit_clock::time_point t0 = limit_clock::time_point{} + hours(1);

} // namespace

TEST_CASE("a token bucket allows a burst, then the rate, then cuts off") {
  token_bucket b{10, 10, t0};
  for (int i = 0; i < 10; ++i)
    CHECK(b.take(t0) == verdict::ok);
  // Over the rate: refused, and the refusals go into debt.
  for (int i = 0; i < 10; ++i)
    CHECK(b.take(t0) == verdict::limited);
  CHECK(b.take(t0) == verdict::flood);
  // Debt of 11 at a rate of 10/s: after 1.2 s one token is there again.
  CHECK_FALSE(b.available(t0 + milliseconds(1100)));
  CHECK(b.available(t0 + milliseconds(1250)));
  CHECK(b.take(t0 + milliseconds(1250)) == verdict::ok);
  // Refill stops at the burst.
  auto later = t0 + hours(1);
  CHECK(b.full(later));
  for (int i = 0; i < 10; ++i)
    CHECK(b.take(later) == verdict::ok);
  CHECK(b.take(later) == verdict::limited);
}

TEST_CASE("a default bucket is unlimited") {
  token_bucket b;
  for (int i = 0; i < 100000; ++i)
    REQUIRE(b.take(t0) == verdict::ok);
  CHECK(b.wait_s(t0) == 0);
}

TEST_CASE("the login limiter counts failures per host and forgives in time") {
  login_limiter l{6}; // 6 per minute: one every 10 s
  CHECK(l.wait_s("10.0.0.1", t0) == 0);
  for (int i = 0; i < 6; ++i)
    l.failed("10.0.0.1", t0);
  CHECK(l.wait_s("10.0.0.1", t0) == 11); // 10 s, rounded up to whole seconds
  CHECK(l.wait_s("10.0.0.2", t0) == 0);  // other hosts are not affected
  CHECK(l.wait_s("10.0.0.1", t0 + seconds(10)) == 0);
  l.failed("10.0.0.1", t0 + seconds(10));
  CHECK(l.wait_s("10.0.0.1", t0 + seconds(10)) > 0);
}

TEST_CASE("the login limiter remembers a bounded number of hosts") {
  login_limiter l{6, 100};
  for (int i = 0; i < 1000; ++i)
    l.failed("host" + std::to_string(i), t0 + seconds(i));
  CHECK(l.hosts() <= 100);
  // The newest guesser is still remembered.
  l.failed("host999", t0 + seconds(999));
  for (int i = 0; i < 6; ++i)
    l.failed("host999", t0 + seconds(999));
  CHECK(l.wait_s("host999", t0 + seconds(999)) > 0);
}

TEST_CASE("a login limiter of 0 limits nothing") {
  login_limiter l{0};
  for (int i = 0; i < 1000; ++i)
    l.failed("h", t0);
  CHECK(l.wait_s("h", t0) == 0);
  CHECK(l.hosts() == 0);
}
