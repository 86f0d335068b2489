#pragma once

// The server's rate limits as plain classes: no actors, no clock of their own
// (callers pass the time in), so tests drive them directly
// (tests/actors/limits_test.cpp). Sessions own a frame_limit each; the login
// limiter is shared by every session of a server.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace parley::srv {

using limit_clock = std::chrono::steady_clock;

/// A token bucket: `rate` tokens per second, at most `burst` saved up. A
/// take beyond the tokens goes into debt, so a peer that ignores refusals
/// gets deeper in until it is cut off.
class token_bucket {
 public:
  enum class verdict {
    ok,      ///< Within the rate.
    limited, ///< Over the rate: refuse this one, tell the peer.
    flood,   ///< Over the rate by another burst: the peer ignores refusals.
  };

  /// An unlimited bucket.
  token_bucket() = default;

  token_bucket(double rate, double burst, limit_clock::time_point now)
    : rate_(rate), burst_(burst), tokens_(burst), last_(now) {
    // nop
  }

  bool unlimited() const { return rate_ <= 0; }

  /// Takes one token at `now`.
  verdict take(limit_clock::time_point now) {
    if (unlimited())
      return verdict::ok;
    refill(now);
    tokens_ -= 1;
    if (tokens_ >= 0)
      return verdict::ok;
    return tokens_ >= -burst_ ? verdict::limited : verdict::flood;
  }

  /// True when a take at `now` would be ok (takes nothing).
  bool available(limit_clock::time_point now) {
    if (unlimited())
      return true;
    refill(now);
    return tokens_ >= 1;
  }

  /// Seconds until one token is available (0 when one is).
  double wait_s(limit_clock::time_point now) {
    if (unlimited())
      return 0;
    refill(now);
    return tokens_ >= 1 ? 0 : (1 - tokens_) / rate_;
  }

  /// True when the bucket refilled completely by `now` (forgettable).
  bool full(limit_clock::time_point now) {
    if (unlimited())
      return true;
    refill(now);
    return tokens_ >= burst_;
  }

 private:
  void refill(limit_clock::time_point now) {
    if (now <= last_)
      return;
    double dt = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ += dt * rate_;
    if (tokens_ > burst_)
      tokens_ = burst_;
  }

  double rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  limit_clock::time_point last_{};
};

/// Failed logins per host (IP address): `per_minute` allowed, saved up to a
/// minute's worth; beyond them, logins from that host are refused before any
/// token is looked at until the bucket refills. Bounded: at most `max_hosts`
/// hosts are remembered (forgiven ones are dropped first). Thread-safe.
class login_limiter {
 public:
  explicit login_limiter(uint32_t per_minute, size_t max_hosts = 65536)
    : per_minute_(per_minute), max_hosts_(max_hosts) {
    // nop
  }

  /// Whole seconds `host` must wait before it may try to log in; 0 = now.
  uint32_t wait_s(const std::string& host, limit_clock::time_point now) {
    if (per_minute_ == 0)
      return 0;
    std::lock_guard<std::mutex> guard{mu_};
    auto i = hosts_.find(host);
    if (i == hosts_.end())
      return 0;
    double w = i->second.wait_s(now);
    return w <= 0 ? 0 : static_cast<uint32_t>(w) + 1;
  }

  /// A login from `host` failed.
  void failed(const std::string& host, limit_clock::time_point now) {
    if (per_minute_ == 0)
      return;
    std::lock_guard<std::mutex> guard{mu_};
    auto i = hosts_.find(host);
    if (i == hosts_.end()) {
      if (hosts_.size() >= max_hosts_)
        forget(now);
      i = hosts_
            .emplace(host, token_bucket{per_minute_ / 60.0,
                                        static_cast<double>(per_minute_), now})
            .first;
    }
    i->second.take(now);
  }

  /// Hosts remembered (for tests and metrics).
  size_t hosts() {
    std::lock_guard<std::mutex> guard{mu_};
    return hosts_.size();
  }

 private:
  /// Makes room: drops the hosts that are forgiven, else an arbitrary one.
  void forget(limit_clock::time_point now) {
    for (auto i = hosts_.begin(); i != hosts_.end();) {
      if (i->second.full(now))
        i = hosts_.erase(i);
      else
        ++i;
    }
    if (hosts_.size() >= max_hosts_)
      hosts_.erase(hosts_.begin());
  }

  uint32_t per_minute_;
  size_t max_hosts_;
  std::mutex mu_;
  std::unordered_map<std::string, token_bucket> hosts_;
};

} // namespace parley::srv
