// A Parley server inside your own program, with a hook that vets messages:
// the engine parleyd wraps, configured in code.
//
//   build/bin/embedded_server            then connect clients to port 5290

#include <parley/server.hpp>

#include <csignal>
#include <iostream>

namespace {

/// Refuses messages that shout, and logins from a banned device.
class house_rules : public parley::server_hooks {
 public:
  parley::verdict on_message(const parley::message_event& ev) override {
    const auto& text = *ev.payload;
    size_t upper = 0;
    for (char c : text)
      upper += c >= 'A' && c <= 'Z';
    if (text.size() > 8 && upper * 2 > text.size())
      return parley::verdict::reject("please do not shout");
    return parley::verdict::ok();
  }
  parley::verdict on_login(const parley::login_event& ev) override {
    return ev.device == "banned-device"
             ? parley::verdict::reject("this device is banned")
             : parley::verdict::ok();
  }
};

} // namespace

int main() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  parley::server_options opts;
  opts.data_dir = "embedded-data";
  auto srv = parley::server::start(opts, std::make_shared<house_rules>());
  if (!srv) {
    std::cerr << srv.error().to_string() << '\n';
    return 1;
  }
  auto& server = **srv;
  if (auto st = server.app_add("shop");
      !st && st.code() != parley::status_code::already_exists) {
    std::cerr << st.to_string() << '\n';
    return 1;
  }
  for (const char* user : {"clerk", "customer"}) {
    auto tok = server.user_add("shop", user);
    if (!tok) {
      std::cerr << tok.error().to_string() << '\n';
      return 1;
    }
    std::cout << user << " token: " << tok->token << '\n';
  }
  std::cout << "serving on port " << server.port() << ", fingerprint "
            << server.fingerprint() << "\nCtrl-C stops.\n";
  int sig = 0;
  sigwait(&stop, &sig);
  server.stop();
  server.wait();
  return 0;
}
