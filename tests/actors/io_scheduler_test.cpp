// The io_sharing scheduler (actors/common/io_scheduler.hpp): its workers
// poll the sockets themselves, so a readable socket is handled on the
// thread that runs the actors, and work sent from outside wakes a worker
// that sleeps in epoll_wait.

#include "actors/common/channel.hpp"
#include "actors/common/io_scheduler.hpp"
#include "actors/common/tsan.hpp"

#include <caf/all.hpp>

#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

using namespace std::chrono_literals;

namespace {

/// Says on which thread it handled each message.
struct where_state {
  std::shared_ptr<std::promise<std::thread::id>> ran;
};

caf::behavior where_actor(
  caf::stateful_actor<where_state,
                      parley::net::hb_actor<caf::event_based_actor>>* self,
  std::shared_ptr<std::promise<std::thread::id>> ran) {
  self->state.ran = std::move(ran);
  return {
    [=](int) { self->state.ran->set_value(std::this_thread::get_id()); },
  };
}

} // namespace

TEST_CASE("io scheduler: one worker runs the actors and polls the sockets") {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{1});
  cfg.set("logger.verbosity", caf::atom("quiet"));
  parley::net::load_io_scheduler(cfg);
  caf::actor_system sys{cfg};
  auto io = parley::net::io_poller_of(sys);
  REQUIRE(io != nullptr);
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  auto polled = std::make_shared<std::promise<std::thread::id>>();
  auto once = std::make_shared<std::once_flag>();
  auto token = io->add(sv[0], [polled, once](uint32_t bits) {
    if ((bits & parley::net::io_event::readable) != 0)
      std::call_once(*once,
                     [&] { polled->set_value(std::this_thread::get_id()); });
  });
  REQUIRE(token.ok());
  // A message from outside the system wakes the worker (asleep in
  // epoll_wait): the actor runs.
  auto ran = std::make_shared<std::promise<std::thread::id>>();
  auto ran_on = ran->get_future();
  auto a = sys.spawn(where_actor, ran);
  caf::anon_send(a, 1);
  REQUIRE(ran_on.wait_for(10s) == std::future_status::ready);
  auto actor_thread = ran_on.get();
  CHECK(actor_thread != std::this_thread::get_id());
  // Bytes on the socket: the handler runs on that same worker thread.
  auto polled_on = polled->get_future();
  REQUIRE(::write(sv[1], "x", 1) == 1);
  REQUIRE(polled_on.wait_for(10s) == std::future_status::ready);
  CHECK(polled_on.get() == actor_thread);
  io->remove(*token);
  ::close(sv[0]);
  ::close(sv[1]);
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_CASE("io scheduler: a system on another scheduler has no io poller") {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", size_t{1});
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  CHECK(parley::net::io_poller_of(sys) == nullptr);
}

TEST_CASE("channel: bytes and the peer's close that came with them are both "
          "seen, though the close raises no second event") {
  auto p = parley::net::poller::start("test.io");
  REQUIRE(p.ok());
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  // The peer writes and closes before the channel reads anything: one
  // event reports both (as a killed server's last bytes and FIN).
  REQUIRE(::write(sv[1], "bye", 3) == 3);
  ::close(sv[1]);
  auto told = std::make_shared<std::promise<void>>();
  auto once = std::make_shared<std::once_flag>();
  auto ch = parley::net::channel::open(**p, sv[0], [told, once] {
    std::call_once(*once, [&] { told->set_value(); });
  });
  REQUIRE(ch.ok());
  REQUIRE(told->get_future().wait_for(10s) == std::future_status::ready);
  auto ev = (*ch)->take_events();
  CHECK((ev & parley::net::io_event::readable) != 0);
  CHECK((ev & parley::net::io_event::hangup) != 0);
  uint8_t buf[64];
  size_t n = 0;
  // A short read, but not "drained": the end of the stream is still to see.
  CHECK((*ch)->read_some(buf, sizeof(buf), n) ==
        parley::net::channel::read_result::data);
  CHECK(n == 3);
  CHECK((*ch)->read_some(buf, sizeof(buf), n) ==
        parley::net::channel::read_result::closed);
}
