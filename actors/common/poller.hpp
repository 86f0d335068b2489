#pragma once

// Readiness of many sockets on one thread (epoll, edge-triggered), for a
// whole server or a whole client runtime: never a thread per connection.
// The poller only says "this socket may be read / written now"; the actor
// that owns a socket reads and writes it itself, on its own thread, without
// any copy through another thread (see channel.hpp). No CAF here.
//
// Why not CAF 0.17's brokers: a broker runs on the multiplexer thread, so
// every chunk crossed threads twice (socket -> broker -> actor, and back),
// each write re-armed EPOLLOUT (two epoll_ctl calls) and woke the
// multiplexer through a pipe: about seven system calls per frame written.
// Here a write is one send() from the actor, and a read one recv() plus a
// share of one epoll_wait (docs/ARCHITECTURE.md, "I/O").
//
// Thread-safety: add() and remove() may be called from any thread. A
// handler runs on the poller's thread; it must be quick (post a message).
// After remove() returns the handler may still run once (an event already
// being dispatched); it is never called for another registration of the
// same fd.

#include <parley/status.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace parley::net {

/// Event bits handed to handlers.
namespace io_event {
constexpr uint32_t readable = 0x01;
constexpr uint32_t writable = 0x02;
constexpr uint32_t hangup = 0x04; ///< Peer closed or error: read to learn.
} // namespace io_event

class poller {
 public:
  using handler = std::function<void(uint32_t events)>;

  /// Starts the poller's thread.
  static result<std::unique_ptr<poller>> start(const char* thread_name);

  /// Stops the thread (registrations left are dropped).
  ~poller();

  poller(const poller&) = delete;
  poller& operator=(const poller&) = delete;

  /// Watches `fd` (non-blocking) for reading and writing, edge-triggered:
  /// the handler runs when the socket becomes readable or writable. Returns
  /// the registration's token, or an error.
  result<uint64_t> add(int fd, handler h);

  /// Stops watching (call before closing the fd).
  void remove(uint64_t token);

 private:
  poller() = default;
  void run();

  struct slot {
    int fd = -1;
    uint32_t generation = 0;
    std::shared_ptr<handler> h;
  };

  int epfd_ = -1;
  int wake_ = -1; ///< eventfd that ends the thread.
  std::atomic<bool> stop_{false};
  std::mutex mtx_;
  std::vector<slot> slots_;
  std::vector<uint32_t> free_;
  std::thread thread_;
};

} // namespace parley::net
