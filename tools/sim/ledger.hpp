#pragma once

// parley-sim's oracle: what was sent, what reached which status and what
// was delivered, per directed conversation (sender -> receiver). Every
// simulated payload starts with a header (sender, receiver, number within
// the conversation, scheduled send time), so a delivery names exactly which
// message it is. Pure C++: no client, no sockets; thread-safe (shards with
// their own locks), so listeners on any thread report into it.
//
// At the end it tells:
//   lost        got SENT (durable on the server) but never delivered
//   duplicated  deliveries beyond the first of a message
//   reordered   deliveries of a message after a later one of the same
//               conversation had been delivered
//   unexpected  deliveries of messages never sent, or that failed
//   pending     sent messages whose status never reached its end state
//               (SENT, and DELIVERED when receipts are on)

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tsl/robin_map.h>

namespace parley::sim {

/// What every simulated payload starts with (little-endian, 24 bytes).
struct payload_header {
  uint32_t from = 0;    ///< Sender's user index.
  uint32_t to = 0;      ///< Receiver's user index.
  uint64_t k = 0;       ///< 1, 2, ... within (from, to).
  int64_t sched_ns = 0; ///< Scheduled send time (steady clock).

  static constexpr size_t size = 24;

  /// A payload of `total` bytes (at least `size`): the header, then filler.
  std::string encode(size_t total) const;

  /// The header of `payload`; nullopt when it is too short.
  static std::optional<payload_header> decode(std::string_view payload);
};

/// How one delivery was classified.
enum class delivery { first, duplicate, reordered, unexpected };

/// The verdict at the end of a run.
struct totals {
  uint64_t attempted = 0; ///< send() accepted by the SDK.
  uint64_t sent = 0;      ///< Reached SENT (or beyond).
  uint64_t delivered = 0; ///< Distinct messages delivered.
  uint64_t receipts = 0;  ///< Reached DELIVERED at the sender.
  uint64_t failed = 0;    ///< Reached a failure status.
  uint64_t lost = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  uint64_t unexpected = 0;
  uint64_t pending = 0;
};

class ledger {
 public:
  /// `want_receipts`: a message's end state includes DELIVERED.
  explicit ledger(bool want_receipts) : want_receipts_(want_receipts) {}

  /// The next number of conversation (from, to). Call it under the
  /// sender's own lock, together with the send, so numbers follow send order.
  uint64_t next(uint32_t from, uint32_t to);

  /// send() of (from, to, k) was refused locally: it never existed.
  void refused(uint32_t from, uint32_t to, uint64_t k);

  /// The sender saw status `s` (the SDK's numbers) for (from, to, k).
  void status(uint32_t from, uint32_t to, uint64_t k, uint8_t s);

  /// The receiver got (from, to, k).
  delivery delivered(uint32_t from, uint32_t to, uint64_t k);

  /// Messages not at their end state yet (for waiting at the end).
  uint64_t outstanding() const;

  /// The verdict (call when the run is over).
  totals finish() const;

  /// Up to `max` conversations with messages not at their end state, each
  /// as "from->to: N open from #k (sent, delivered, receipt flags of #k)",
  /// for a report that says where a run got stuck.
  std::vector<std::string> stuck(size_t max) const;

 private:
  // Per message k (index k - 1): which of these happened.
  static constexpr uint8_t f_attempted = 0x01;
  static constexpr uint8_t f_sent = 0x02;
  static constexpr uint8_t f_receipt = 0x04;
  static constexpr uint8_t f_failed = 0x08;
  static constexpr uint8_t f_delivered = 0x10;

  /// The flags of a conversation's messages: the first ones inline (most
  /// conversations of a random-pairs run hold one or two messages), the
  /// rest on the heap.
  class flag_list {
   public:
    size_t size() const { return n_; }
    uint8_t& operator[](size_t i) {
      return i < inline_n ? small_[i] : big_[i - inline_n];
    }
    uint8_t operator[](size_t i) const {
      return i < inline_n ? small_[i] : big_[i - inline_n];
    }
    void push_back(uint8_t f) {
      if (n_ < inline_n)
        small_[n_] = f;
      else
        big_.push_back(f);
      ++n_;
    }

   private:
    static constexpr size_t inline_n = 12;
    uint8_t small_[inline_n] = {};
    uint32_t n_ = 0;
    std::vector<uint8_t> big_;
  };

  struct conv {
    uint64_t max_delivered = 0;
    uint32_t duplicated = 0;
    uint32_t reordered = 0;
    uint32_t unexpected = 0;
    flag_list flags; ///< Message k's at index k - 1: k = 1 .. size().
  };

  /// Keys are (from << 32 | to): mixed, so that the table's low bits do not
  /// see only the receiver.
  struct key_hash {
    size_t operator()(uint64_t k) const noexcept {
      k ^= k >> 33;
      k *= 0xff51afd7ed558ccdull;
      k ^= k >> 33;
      return static_cast<size_t>(k);
    }
  };

  struct shard {
    mutable std::mutex mtx;
    tsl::robin_map<uint64_t, conv, key_hash> convs;
  };

  static constexpr size_t shard_count = 64;

  static uint64_t key(uint32_t from, uint32_t to) {
    return (uint64_t{from} << 32) | to;
  }

  shard& shard_of(uint64_t k) {
    return shards_[(k * 0x9E3779B97F4A7C15ull) >> 58];
  }

  bool done(uint8_t f) const;

  bool want_receipts_;
  shard shards_[shard_count];
};

} // namespace parley::sim
