#include "actors/client/callback_pool.hpp"

namespace parley::net {

namespace {

/// The strand whose task this thread runs, if any.
thread_local strand* current_strand = nullptr;

/// Tasks a strand runs before it yields its thread to other strands.
constexpr size_t max_batch = 64;

} // namespace

void strand::post(std::function<void()> task) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (closed_)
    return;
  tasks_.push_back(std::move(task));
  if (!scheduled_) {
    scheduled_ = true;
    pool_.schedule(shared_from_this());
  }
}

void strand::close() {
  std::unique_lock<std::mutex> guard{mtx_};
  closed_ = true;
  tasks_.clear();
  if (current_strand == this)
    return; // called from one of our own callbacks: cannot wait for itself
  idle_.wait(guard, [this] { return !scheduled_; });
}

void strand::run() {
  current_strand = this;
  for (size_t i = 0; i < max_batch; ++i) {
    std::function<void()> task;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (tasks_.empty()) {
        scheduled_ = false;
        idle_.notify_all();
        current_strand = nullptr;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
  current_strand = nullptr;
  // More to do: go to the back of the line so other clients get a turn.
  pool_.schedule(shared_from_this());
}

callback_pool::callback_pool(size_t threads) {
  if (threads == 0)
    threads = 1;
  for (size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      for (;;) {
        std::shared_ptr<strand> s;
        {
          std::unique_lock<std::mutex> guard{mtx_};
          cv_.wait(guard, [this] { return stop_ || !ready_.empty(); });
          if (ready_.empty())
            return;
          s = std::move(ready_.front());
          ready_.pop_front();
        }
        s->run();
      }
    });
}

callback_pool::~callback_pool() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

void callback_pool::schedule(std::shared_ptr<strand> s) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    ready_.push_back(std::move(s));
  }
  cv_.notify_one();
}

} // namespace parley::net
