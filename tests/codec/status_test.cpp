// The shared status type and result<T>.

#include <parley/status.hpp>

#include <doctest/doctest.h>

using parley::result;
using parley::status;
using parley::status_code;

TEST_CASE("an OK status is empty and cheap") {
  status s;
  CHECK(s.ok());
  CHECK(static_cast<bool>(s));
  CHECK(s.code() == status_code::ok);
  CHECK(s.message().empty());
  CHECK(s.to_string() == "ok");
  CHECK(sizeof(status) == sizeof(void*));
}

TEST_CASE("a failed status keeps code and message through copies") {
  status s{status_code::not_found, "no user 'bob' in app 'demo'"};
  CHECK(!s.ok());
  status c = s;
  CHECK(c.code() == status_code::not_found);
  CHECK(c.to_string() == "not_found: no user 'bob' in app 'demo'");
  status m = std::move(c);
  CHECK(m.message() == s.message());
  auto a = s.annotate("admin user delete");
  CHECK(a.message() == "admin user delete: no user 'bob' in app 'demo'");
  CHECK(status{}.annotate("x").ok());
}

TEST_CASE("result holds a value or an error") {
  result<std::string> r{std::string{"abc"}};
  REQUIRE(r.ok());
  CHECK(*r == "abc");
  CHECK(r->size() == 3);
  CHECK(r.error().ok());
  result<std::string> e{status{status_code::io_error, "disk"}};
  CHECK(!e.ok());
  CHECK(e.error().code() == status_code::io_error);
  e = r;
  CHECK(e.ok());
  CHECK(*e == "abc");
  result<int> bad{status{}};
  CHECK(!bad.ok());
  CHECK(bad.error().code() == status_code::internal);
}
