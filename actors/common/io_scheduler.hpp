#pragma once

// A CAF scheduler policy whose workers also poll the sockets: no poller
// thread of its own, so a readable socket reaches its actor on the thread
// that will run it, and an idle runtime sleeps in epoll_wait rather than
// on a condition variable while a second thread watches the sockets.
//
// Shape (one central queue, as CAF's work_sharing):
//   dequeue: a job if there is one; every `poll_every` jobs also a
//            non-blocking poll, so busy workers keep reading sockets. No
//            job: one worker blocks in poll(-1), the others wait on the
//            condition variable.
//   enqueue: push; wake a waiting worker, or else the blocked poller (its
//            eventfd), at most once per wait.
// Handlers posted by the poll enqueue the actors they notify, on this
// thread, without waking anybody.
//
// Used by parley::server and parley::runtime for their own actor systems
// (load_io_scheduler before the system exists; io_poller_of afterwards).
// A host's system keeps its own scheduler, and Parley then runs a poller
// with a thread (poller::start). Includes CAF: for actors/ and api/ .cpp
// files only.

#include "actors/common/poller.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>

namespace parley::net {

class io_sharing : public caf::policy::unprofiled {
 public:
  /// Busy workers poll the sockets (without waiting) after this many jobs.
  static constexpr unsigned poll_every = 16;

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {
      auto p = poller::create();
      if (p)
        io = std::move(*p);
    }

    std::mutex lock;
    std::condition_variable cv;
    std::deque<caf::resumable*> queue;
    unsigned sleepers = 0; ///< Workers waiting on cv.
    bool polling = false;  ///< A worker is inside poll().
    bool blocked = false;  ///< ... and it waits (poll(-1)).
    bool kicked = false;   ///< wake() was sent for this wait.
    /// The sockets (null only when epoll could not be created: then the
    /// workers only run jobs, and io_poller_of says there is none). Shared:
    /// the owner of the system keeps it until its last channel is gone.
    std::shared_ptr<poller> io;
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {
      // nop
    }
    unsigned since_poll = 0;
  };

  template <class Coordinator>
  void enqueue(Coordinator* self, caf::resumable* job) {
    auto& d = self->data();
    bool kick = false;
    {
      std::lock_guard<std::mutex> guard{d.lock};
      d.queue.push_back(job);
      if (d.sleepers > 0) {
        d.cv.notify_one();
      } else if (d.blocked && !d.kicked) {
        d.kicked = true;
        kick = true;
      }
    }
    if (kick)
      d.io->wake();
  }

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    enqueue(self, job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& d = self->parent()->data();
    auto& w = self->data();
    std::unique_lock<std::mutex> guard{d.lock};
    for (;;) {
      if (!d.queue.empty()) {
        auto* job = d.queue.front();
        d.queue.pop_front();
        if (++w.since_poll >= poll_every && d.io && !d.polling) {
          w.since_poll = 0;
          d.polling = true;
          guard.unlock();
          d.io->poll(0);
          guard.lock();
          d.polling = false;
        }
        // This worker goes to run a job: a waiting one takes over the
        // sockets (it finds nobody polling), so a long job here does not
        // leave them unwatched.
        if (!d.polling && d.sleepers > 0)
          d.cv.notify_one();
        return job;
      }
      if (d.io && !d.polling) {
        w.since_poll = 0;
        d.polling = true;
        d.blocked = true;
        guard.unlock();
        d.io->poll(-1, &unblocked, &d);
        guard.lock();
        d.polling = false;
        continue;
      }
      ++d.sleepers;
      d.cv.wait(guard);
      --d.sleepers;
    }
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker*, UnaryFunction) {
    // nop
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    auto& d = self->data();
    std::unique_lock<std::mutex> guard{d.lock};
    while (!d.queue.empty()) {
      auto* job = d.queue.front();
      d.queue.pop_front();
      f(job);
    }
  }

 private:
  /// The blocking poll returned: enqueues no longer need to wake it.
  static void unblocked(void* arg) {
    auto& d = *static_cast<coordinator_data*>(arg);
    std::lock_guard<std::mutex> guard{d.lock};
    d.blocked = false;
    d.kicked = false;
  }
};

using io_coordinator = caf::scheduler::coordinator<io_sharing>;

/// Makes `cfg`'s actor system use the io_sharing scheduler (its workers:
/// `scheduler.max-threads`).
inline void load_io_scheduler(caf::actor_system_config& cfg) {
  cfg.load<io_coordinator>();
}

/// The poller of `sys`'s io_sharing scheduler, or null when the system
/// runs another scheduler (a host's) or epoll was not available. Keep the
/// pointer until every channel on it is destroyed (after the system).
inline std::shared_ptr<poller> io_poller_of(caf::actor_system& sys) {
  auto* c = dynamic_cast<io_coordinator*>(&sys.scheduler());
  return c != nullptr ? c->data().io : nullptr;
}

} // namespace parley::net
