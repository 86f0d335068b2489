#pragma once

// ThreadSanitizer and CAF. Debian's libcaf is not instrumented, so TSan does
// not see the synchronisation inside CAF's lock-free mailboxes: every
// message one thread hands to an actor running on another would look like a
// race. In TSan builds Parley's actors derive from hb_actor<Base>: an
// enqueue releases on the receiving actor, and handling a message (and a
// resume) acquires it and releases it when done, for the next worker
// thread: the happens-before that CAF guarantees, told to TSan. In other builds
// hb_actor<Base> is Base. tests/tsan.supp holds what remains inside CAF's own
// code.

#include <caf/actor_config.hpp>
#include <caf/execution_unit.hpp>
#include <caf/invoke_message_result.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/resumable.hpp>

#include <utility>

#if defined(__SANITIZE_THREAD__)
#define PARLEY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PARLEY_TSAN 1
#endif
#endif

#ifdef PARLEY_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace parley::net {

#ifdef PARLEY_TSAN

template<class Base>
class hb_actor : public Base {
 public:
  template<class... Ts>
  explicit hb_actor(caf::actor_config& cfg, Ts&&... xs)
    : Base(cfg, std::forward<Ts>(xs)...) {
    // nop
  }

  void launch(caf::execution_unit* eu, bool lazy, bool hide) override {
    __tsan_release(this); // what the spawning thread built...
    Base::launch(eu, lazy, hide);
  }

  void initialize() override {
    __tsan_acquire(this); // ...the worker that starts the actor sees
    Base::initialize();
    __tsan_release(this);
  }

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit* eu) override {
    __tsan_release(this);
    Base::enqueue(std::move(ptr), eu);
  }

  /// Per message: one resume may handle messages enqueued while it runs.
  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    __tsan_acquire(this);
    auto r = Base::consume(x);
    __tsan_release(this);
    return r;
  }

  caf::resumable::resume_result resume(caf::execution_unit* eu,
                                       size_t max_throughput) override {
    __tsan_acquire(this);
    auto r = Base::resume(eu, max_throughput);
    __tsan_release(this);
    return r;
  }
};

#else

template<class Base>
using hb_actor = Base;

#endif

} // namespace parley::net
