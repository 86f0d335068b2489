// A server on the host's own actor system (<parley/interop.hpp>).

#include "actors/common/tsan.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include <parley/interop.hpp>

#include <future>

#include <caf/all.hpp>

#include <doctest/doctest.h>

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<std::promise<int>>)

using namespace parley;
using namespace parley::test;

namespace {

/// The host keeps CAF's default (work-stealing) scheduler, except under
/// ThreadSanitizer: work stealing frees its job nodes on another thread
/// through atomics inside the uninstrumented libcaf, which TSan cannot see.
void host_policy([[maybe_unused]] caf::actor_system_config& cfg) {
#ifdef PARLEY_TSAN
  cfg.set("scheduler.policy", caf::atom("sharing"));
#endif
}

} // namespace

TEST_CASE("a server runs on the host's actor system") {
  temp_dir dir;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  host_policy(cfg);
  parley::interop::prepare(cfg);
  caf::actor_system sys{cfg};
  // The host's own actors keep working next to Parley's.
  // (An argument: CAF 0.17's spawn of a function without arguments binds a
  // reference to a null tuple, which UBSan reports.)
  using answer_slot = std::shared_ptr<std::promise<int>>;
  // (Its type tells ThreadSanitizer what CAF synchronises, as Parley's own
  // actors do: actors/common/tsan.hpp.)
  auto echo = sys.spawn(
    [](net::hb_actor<caf::event_based_actor>*, int step) -> caf::behavior {
      return {[step](int x, answer_slot& out) { out->set_value(x + step); }};
    },
    1);
  server_options opts;
  opts.port = 0;
  opts.data_dir = dir.path();
  opts.log_level = "warn";
  auto srv = interop::start_server(sys, opts);
  REQUIRE_MESSAGE(srv.ok(), srv.error().to_string());
  REQUIRE((*srv)->app_add("demo").ok());
  auto tok = (*srv)->user_add("demo", "alice");
  REQUIRE(tok.ok());
  auto c = test_client::connect((*srv)->port(), (*srv)->cert_file());
  CHECK(c->login("demo", tok->token, "d1").address == "alice");
  auto slot = std::make_shared<std::promise<int>>();
  auto answer = slot->get_future();
  caf::anon_send(echo, 41, slot);
  REQUIRE(answer.wait_for(std::chrono::seconds(5)) ==
          std::future_status::ready);
  CHECK(answer.get() == 42);
  (*srv)->stop();
  (*srv)->wait();
  CHECK(c->wait_closed());
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
}

TEST_CASE("a host system without the middleman is refused with a hint") {
  temp_dir dir;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{1});
  caf::actor_system sys{cfg};
  server_options opts;
  opts.port = 0;
  opts.data_dir = dir.path();
  opts.log_level = "warn";
  auto srv = interop::start_server(sys, opts);
  REQUIRE(!srv.ok());
  CHECK(srv.error().code() == status_code::failed_precondition);
  CHECK(srv.error().message().find("prepare") != std::string::npos);
}

TEST_CASE("a client runtime runs on the host's actor system") {
  temp_dir dir;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  host_policy(cfg);
  parley::interop::prepare(cfg);
  caf::actor_system sys{cfg};
  server_options opts;
  opts.port = 0;
  opts.data_dir = dir.path();
  opts.log_level = "warn";
  auto srv = interop::start_server(sys, opts); // server and client share it
  REQUIRE(srv.ok());
  REQUIRE((*srv)->app_add("demo").ok());
  auto rt = interop::make_runtime(sys);
  REQUIRE(rt.ok());
  client_options co;
  co.app_id = "demo";
  co.token = (*srv)->user_add("demo", "alice")->token;
  co.port = (*srv)->port();
  co.ca_file = (*srv)->cert_file();
  struct waiter : listener {
    std::promise<void> sent;
    void on_message_status(const message& m, const std::string&) override {
      if (m.status == message_status::sent)
        sent.set_value();
    }
  };
  auto w = std::make_shared<waiter>();
  auto done = w->sent.get_future();
  {
    auto c = client::create(co, *rt);
    REQUIRE(c.ok());
    (*c)->add_listener(w);
    REQUIRE((*c)->start().ok());
    REQUIRE((*c)->send("alice", "on the host's system").ok());
    CHECK(done.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  }
  rt->reset();
  (*srv)->stop();
  (*srv)->wait();
}
