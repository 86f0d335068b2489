#pragma once

// A fresh directory under $TMPDIR (or /tmp), removed with its contents when
// the object goes away.

#include <cstdlib>
#include <filesystem>
#include <string>

namespace parley::test {

class temp_dir {
 public:
  temp_dir() {
    auto base = std::filesystem::temp_directory_path() / "parley-test-XXXXXX";
    std::string tmpl = base.string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

} // namespace parley::test
