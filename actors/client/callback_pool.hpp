#pragma once

// The listener adapter's threads: a small pool shared by every client of a
// runtime, and one strand per client. A strand runs its tasks one at a time
// and in order (a client's callbacks never overlap and never reorder), on
// the pool's threads (never an actor thread). No CAF here.
//
// Thread-safety: everything may be called from any thread.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace parley::net {

class callback_pool;

/// Serial tasks of one client.
class strand : public std::enable_shared_from_this<strand> {
 public:
  explicit strand(callback_pool& pool) : pool_(pool) {
    // nop
  }

  /// Queues `task`; it runs after every task posted before it. Ignored after
  /// close().
  void post(std::function<void()> task);

  /// Stops accepting tasks and waits until none runs, unless called from a
  /// task of this very strand (then it only stops accepting).
  void close();

  /// Runs queued tasks (called by the pool).
  void run();

 private:
  callback_pool& pool_;
  std::mutex mtx_;
  std::condition_variable idle_;
  std::deque<std::function<void()>> tasks_;
  bool scheduled_ = false;
  bool closed_ = false;
};

/// Threads that run strands.
class callback_pool {
 public:
  explicit callback_pool(size_t threads);
  ~callback_pool(); ///< Joins the threads (strands must be closed).

  /// A new strand on this pool.
  std::shared_ptr<strand> make_strand() {
    return std::make_shared<strand>(*this);
  }

  /// Queues a strand that has tasks.
  void schedule(std::shared_ptr<strand> s);

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<strand>> ready_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

} // namespace parley::net
