#pragma once

// A connected, non-blocking socket owned by one actor, which reads and
// writes it itself (no copy through another thread): the poller only tells
// it when the socket became readable or writable. No CAF here: the owner
// passes a `notify` that posts a message to itself.
//
//   auto ch = channel::open(poller, fd, [me] { anon_send(me, io_atom); });
//   // in the io handler:
//   auto ev = ch->take_events();
//   if (ev & io_event::writable) ch->flush();
//   while (ch->read_some(buf, 65536) == channel::read_result::data) ...
//
// Writes go out at once as far as the kernel takes them; the rest waits in
// the channel (pending()) and leaves with flush() on the next writable
// event. Events are coalesced: while one notification is unhandled, no
// other is posted.
//
// Thread-safety: one thread at a time (the owning actor's); only the
// poller's handler runs elsewhere, and it only touches two atomics.

#include "actors/common/poller.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace parley::net {

class channel {
 public:
  /// What a read found.
  enum class read_result {
    data,    ///< Bytes were appended; the socket may have more.
    drained, ///< Bytes (maybe none) appended; nothing more for now.
    closed,  ///< The peer closed the connection (after any bytes).
    failed,  ///< The socket failed (reset, error).
  };

  /// Adopts the connected socket `fd` (sets it non-blocking) and registers
  /// it with `p`; `notify` runs on the poller thread when events arrive.
  static result<std::unique_ptr<channel>> open(poller& p, int fd,
                                               std::function<void()> notify);

  /// Deregisters and closes the socket (what is pending is dropped).
  ~channel();

  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// Events since the last call; re-arms the notification.
  uint32_t take_events();

  /// Reads at most `max` bytes into `buf`; `n` says how many.
  read_result read_some(uint8_t* buf, size_t max, size_t& n);

  /// Sends `n` bytes (after what is pending). False when the socket failed.
  bool write(const uint8_t* data, size_t n);

  /// Sends what is pending. False when the socket failed.
  bool flush();

  /// Bytes the kernel did not take yet.
  size_t pending() const { return pending_.size() - pending_off_; }

  /// "address:port" of the peer.
  const std::string& peer() const { return peer_; }

 private:
  channel() = default;

  poller* poller_ = nullptr;
  uint64_t token_ = 0;
  int fd_ = -1;
  std::string peer_;
  /// What the poller's handler touches: shared, so that a dispatch that
  /// races with our destruction finds it alive.
  struct signal {
    std::function<void()> notify;
    std::atomic<uint32_t> events{0};
    std::atomic<bool> notified{false};
  };
  std::shared_ptr<signal> sig_;
  std::vector<uint8_t> pending_;
  size_t pending_off_ = 0;
  bool hangup_ = false; ///< The poller reported the peer's close or an error.
};

} // namespace parley::net
