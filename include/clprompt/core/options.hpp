#pragma once
// Options structs list their fields once, in a static `fields()` tuple; that one list drives
// JSON reading (strict: unknown keys and wrong types are errors naming the field), JSON writing
// and printing. Example:
//
//   struct MyOptions {
//     int64_t length = 5;
//     double lr = 1e-3;
//     static constexpr auto fields() {
//       return std::tuple{clprompt::field("length", &MyOptions::length),
//                         clprompt::field("lr", &MyOptions::lr)};
//     }
//     void validate(const std::string& path) const;  // optional: throws ConfigError
//   };
#include <array>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "clprompt/core/error.hpp"

namespace clprompt {

/// JSON that keeps keys in insertion order, so configurations print in their declared order.
using Json = nlohmann::ordered_json;

/// One named member of an options struct.
template <class Owner, class T>
struct Field {
  std::string_view name;
  T Owner::*member;
};
template <class Owner, class T>
constexpr Field<Owner, T> field(std::string_view name, T Owner::*member) {
  return {name, member};
}

/// A struct that lists its fields (see the file comment).
template <class T>
concept ReflectedOptions = requires { T::fields(); };

/// An enum usable in options: `enum_names(E{})` (found by ADL) returns an array of
/// {value, "name"} pairs.
template <class E>
concept NamedEnum = std::is_enum_v<E> && requires(E e) { enum_names(e); };

template <NamedEnum E>
std::string to_string(E value) {
  for (const auto& [v, name] : enum_names(E{}))
    if (v == value) return std::string(name);
  return "<invalid>";
}

namespace detail {

inline std::string join_path(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

template <class T>
struct IsVector : std::false_type {};
template <class T, class A>
struct IsVector<std::vector<T, A>> : std::true_type {};

template <class T>
void read_value(const Json& j, T& out, const std::string& path);

template <class T>
Json write_value(const T& value);

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, bool>) return "a boolean";
  else if constexpr (std::is_integral_v<T>) return "an integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (IsVector<T>::value) return "an array";
  else return "an object";
}

}  // namespace detail

/// Reads `j` into `options`, starting from the values already in `options` (the defaults).
/// Unknown keys, wrong types and invalid values throw ConfigError naming the dotted path.
template <ReflectedOptions T>
void read_options(const Json& j, T& options, const std::string& path = "") {
  if (!j.is_object())
    throw ConfigError(path.empty() ? "<root>" : path, fmt::format("expected an object, got {}", j.dump()));
  std::apply(
      [&](const auto&... f) {
        for (const auto& [key, value] : j.items()) {
          const bool known = ((key == f.name) || ...);
          if (!known) {
            std::string names;
            ((names += (names.empty() ? "" : ", ") + std::string(f.name)), ...);
            throw ConfigError(detail::join_path(path, key),
                              fmt::format("unknown field; expected one of: {}", names));
          }
        }
        ((j.contains(std::string(f.name))
              ? detail::read_value(j.at(std::string(f.name)), options.*(f.member),
                                   detail::join_path(path, f.name))
              : void()),
         ...);
      },
      T::fields());
  if constexpr (requires { options.validate(path); }) options.validate(path);
}

/// Writes every field of `options` as a JSON object.
template <ReflectedOptions T>
Json write_options(const T& options) {
  Json j = Json::object();
  std::apply([&](const auto&... f) { ((j[std::string(f.name)] = detail::write_value(options.*(f.member))), ...); },
             T::fields());
  return j;
}

/// Parses options from JSON with defaults for absent fields.
template <ReflectedOptions T>
T options_from_json(const Json& j, const std::string& path = "") {
  T options{};
  read_options(j, options, path);
  return options;
}

namespace detail {

template <class T>
void read_value(const Json& j, T& out, const std::string& path) {
  auto mismatch = [&] {
    throw ConfigError(path, fmt::format("expected {}, got {}", type_name<T>(), j.dump()));
  };
  if constexpr (std::is_same_v<T, Json>) {
    out = j;  // free-form: parsed later by whoever owns it
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!j.is_boolean()) mismatch();
    out = j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!j.is_number_integer()) mismatch();
    out = j.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!j.is_number()) mismatch();
    out = j.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!j.is_string()) mismatch();
    out = j.get<std::string>();
  } else if constexpr (NamedEnum<T>) {
    if (!j.is_string()) mismatch();
    const auto text = j.get<std::string>();
    std::string names;
    for (const auto& [v, name] : enum_names(T{})) {
      if (text == name) {
        out = v;
        return;
      }
      names += (names.empty() ? "" : ", ") + std::string(name);
    }
    throw ConfigError(path, fmt::format("unknown value '{}'; expected one of: {}", text, names));
  } else if constexpr (IsVector<T>::value) {
    if (!j.is_array()) mismatch();
    T values(j.size());
    for (std::size_t i = 0; i < j.size(); ++i)
      read_value(j[i], values[i], fmt::format("{}[{}]", path, i));
    out = std::move(values);
  } else if constexpr (ReflectedOptions<T>) {
    read_options(j, out, path);
  } else {
    static_assert(sizeof(T) == 0, "unsupported option field type");
  }
}

template <class T>
Json write_value(const T& value) {
  if constexpr (std::is_same_v<T, Json>) {
    return value;
  } else if constexpr (NamedEnum<T>) {
    return to_string(value);
  } else if constexpr (IsVector<T>::value) {
    Json a = Json::array();
    for (const auto& v : value) a.push_back(write_value(v));
    return a;
  } else if constexpr (ReflectedOptions<T>) {
    return write_options(value);
  } else {
    return Json(value);
  }
}

}  // namespace detail

/// Throws ConfigError(path.key, message) unless `condition` holds.
inline void require_option(bool condition, const std::string& path, std::string_view key,
                           const std::string& message) {
  if (!condition) throw ConfigError(detail::join_path(path, key), message);
}

}  // namespace clprompt
