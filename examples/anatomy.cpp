// The anatomy of a Parley application: credentials, listeners, database,
// start; then the functional interface (send, read) and the callbacks.
// Self-contained: it starts its own server on a free port (in a real app the
// server is parleyd and the token comes from your backend).
#include <future>
#include <iostream>
#include <parley/client.hpp>
#include <parley/server.hpp>

struct app_listener : parley::listener {
  std::promise<void> sent; // set when the first message is durable
  void on_connection_status(parley::connection_status s,
                            const std::string& why) override {
    std::cout << "connection: " << parley::to_string(s) << ' ' << why << '\n';
  }
  void on_message(const parley::message& m, parley::message_origin) override {
    std::cout << m.sender << " says: " << m.payload << '\n';
  }
  void on_message_status(const parley::message& m,
                         const std::string&) override {
    std::cout << "message " << m.id << ": " << parley::to_string(m.status)
              << '\n';
    if (m.status == parley::message_status::sent)
      sent.set_value();
  }
};

int main(int argc, char** argv) {
  parley::server_options so;
  so.port = 0;
  so.data_dir = argc > 1 ? argv[1] : "anatomy-data";
  so.log_level = "warn";
  auto srv = parley::server::start(so);
  if (!srv)
    return std::cerr << srv.error().to_string() << '\n', 1;
  (*srv)->app_add("demo");
  parley::client_options opts; // 1. credentials
  opts.app_id = "demo";
  opts.token = (*srv)->user_add("demo", "alice")->token;
  opts.port = (*srv)->port();
  opts.ca_file = (*srv)->cert_file();
  opts.database = so.data_dir + "/alice-db"; // 3. database (optional)
  auto alice = parley::client::create(opts);
  if (!alice)
    return std::cerr << alice.error().to_string() << '\n', 1;
  auto events = std::make_shared<app_listener>();
  (*alice)->add_listener(events); // 2. listeners
  (*alice)->start();              // 4. start
  auto done = events->sent.get_future();
  auto id = (*alice)->send("alice", "hello, me"); // a note to self
  if (!id)
    return std::cerr << id.error().to_string() << '\n', 1;
  if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready)
    return std::cerr << "the message was not sent\n", 1;
  auto conversations = (*alice)->summary(); // the local database
  for (auto& c : *conversations)
    std::cout << c.peer << ": " << c.unread << " unread\n";
  return 0;
}
