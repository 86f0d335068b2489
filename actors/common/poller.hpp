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
// Two ways to run it:
// - start(): the poller has a thread of its own that waits and dispatches
//   (for a host's actor system, whose scheduler is not ours);
// - create(): no thread; the scheduler's workers call poll() when they run
//   out of work (actors/common/io_scheduler.hpp), so a socket's readiness
//   reaches its actor without a hop through another thread, and wake() ends
//   a poll() that blocks when work arrives from elsewhere.
//
// Thread-safety: add() and remove() may be called from any thread; wake()
// too. poll() by one thread at a time. A handler runs on the thread that
// polls; it must be quick (post a message). After remove() returns the
// handler may still run once (an event already being dispatched); it is
// never called for another registration of the same fd.

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

  /// A poller with a thread of its own, which polls and dispatches.
  static result<std::unique_ptr<poller>> start(const char* thread_name);

  /// A poller without a thread: somebody calls poll().
  static result<std::unique_ptr<poller>> create();

  /// Stops the thread, if any (registrations left are dropped).
  ~poller();

  /// Waits up to `timeout_ms` (-1: until something happens, 0: not at all)
  /// for readiness or wake(), then runs the handlers of what is ready.
  /// `woke` runs after the wait and before the handlers (the scheduler
  /// learns there that its poller no longer blocks). Returns the number of
  /// handlers run. REQUIRES: created with create(); one caller at a time.
  size_t poll(int timeout_ms, void (*woke)(void*) = nullptr,
              void* arg = nullptr);

  /// Ends a poll() that waits, or makes the next one return at once.
  void wake();

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
  static result<std::unique_ptr<poller>> make();
  void run();
  /// Collects the handlers of `n` events in `evs_` into ready_.
  void collect(int n);

  struct slot {
    int fd = -1;
    uint32_t generation = 0;
    std::shared_ptr<handler> h;
  };

  int epfd_ = -1;
  int wake_ = -1; ///< eventfd: ends the thread, or a blocking poll().
  std::atomic<bool> stop_{false};
  std::mutex mtx_;
  std::vector<slot> slots_;
  std::vector<uint32_t> free_;
  std::thread thread_;
  /// The polling thread's own: events and the handlers to run.
  static constexpr int max_events = 256;
  struct epoll_buffer;
  std::unique_ptr<epoll_buffer> evs_;
  std::vector<std::pair<std::shared_ptr<handler>, uint32_t>> ready_;
};

} // namespace parley::net
