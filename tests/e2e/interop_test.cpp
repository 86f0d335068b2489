// A server on the host's own actor system (<parley/interop.hpp>).

#include "tests/support/temp_dir.hpp"
#include "tests/support/test_client.hpp"

#include <parley/interop.hpp>

#include <future>

#include <caf/all.hpp>

#include <doctest/doctest.h>

using namespace parley;
using namespace parley::test;

TEST_CASE("a server runs on the host's actor system") {
  temp_dir dir;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t{2});
  parley::interop::prepare(cfg);
  caf::actor_system sys{cfg};
  // The host's own actors keep working next to Parley's.
  // (An argument: CAF 0.17's spawn of a function without arguments binds a
  // reference to a null tuple, which UBSan reports.)
  auto echo = sys.spawn(
    [](int step) -> caf::behavior {
      return {[step](int x) { return x + step; }};
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
  caf::scoped_actor self{sys};
  int answer = 0;
  self->request(echo, std::chrono::seconds(5), 41)
    .receive([&](int x) { answer = x; }, [](caf::error&) {});
  CHECK(answer == 42);
  (*srv)->stop();
  (*srv)->wait();
  CHECK(c->wait_closed());
  self->send_exit(echo, caf::exit_reason::user_shutdown);
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
