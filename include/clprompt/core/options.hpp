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
//
// `inline_fields(&Owner::member)` lists the fields of a member struct at the owner's own level
// (flat in JSON), so that a group of options shared by several structs is declared once:
// TrainOptions and AlignmentOptions both hold an OptimizerOptions this way.
#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
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

/// The fields of a member struct, listed flat at the owner's level (see the file comment).
template <class Owner, class T>
struct InlineFields {
  T Owner::*member;
};
template <class Owner, class T>
constexpr InlineFields<Owner, T> inline_fields(T Owner::*member) {
  return {member};
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

namespace detail {

template <class T>
struct IsInline : std::false_type {};
template <class Owner, class T>
struct IsInline<InlineFields<Owner, T>> : std::true_type {};

/// Appends the JSON names of T's fields, inline groups expanded.
template <class T>
void collect_field_names(std::vector<std::string>& names) {
  std::apply(
      [&](const auto&... f) {
        auto add = [&](const auto& one) {
          using F = std::decay_t<decltype(one)>;
          if constexpr (IsInline<F>::value) collect_field_names<std::decay_t<decltype(std::declval<T&>().*(one.member))>>(names);
          else names.emplace_back(one.name);
        };
        (add(f), ...);
      },
      T::fields());
}

/// Reads the fields of T present in `j` (inline groups from the same object); no unknown-key check.
template <class T>
void read_fields(const Json& j, T& options, const std::string& path) {
  std::apply(
      [&](const auto&... f) {
        auto read = [&](const auto& one) {
          using F = std::decay_t<decltype(one)>;
          if constexpr (IsInline<F>::value) {
            read_fields(j, options.*(one.member), path);
            if constexpr (requires { (options.*(one.member)).validate(path); }) (options.*(one.member)).validate(path);
          } else if (j.contains(std::string(one.name))) {
            read_value(j.at(std::string(one.name)), options.*(one.member), join_path(path, one.name));
          }
        };
        (read(f), ...);
      },
      T::fields());
}

template <class T>
void write_fields(const T& options, Json& j) {
  std::apply(
      [&](const auto&... f) {
        auto write = [&](const auto& one) {
          using F = std::decay_t<decltype(one)>;
          if constexpr (IsInline<F>::value) write_fields(options.*(one.member), j);
          else j[std::string(one.name)] = write_value(options.*(one.member));
        };
        (write(f), ...);
      },
      T::fields());
}

}  // namespace detail

/// Reads `j` into `options`, starting from the values already in `options` (the defaults).
/// Unknown keys, wrong types and invalid values throw ConfigError naming the dotted path.
template <ReflectedOptions T>
void read_options(const Json& j, T& options, const std::string& path = "") {
  if (!j.is_object())
    throw ConfigError(path.empty() ? "<root>" : path, fmt::format("expected an object, got {}", brief(j.dump())));
  std::vector<std::string> names;
  detail::collect_field_names<T>(names);
  for (const auto& [key, value] : j.items())
    if (std::find(names.begin(), names.end(), key) == names.end())
      throw ConfigError(detail::join_path(path, key),
                        fmt::format("unknown field; expected one of: {}", fmt::join(names, ", ")));
  detail::read_fields(j, options, path);
  if constexpr (requires { options.validate(path); }) options.validate(path);
}

/// Writes every field of `options` as a JSON object.
template <ReflectedOptions T>
Json write_options(const T& options) {
  Json j = Json::object();
  detail::write_fields(options, j);
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
    throw ConfigError(path, fmt::format("expected {}, got {}", type_name<T>(), brief(j.dump())));
  };
  if constexpr (std::is_same_v<T, Json>) {
    out = j;  // free-form: parsed later by whoever owns it
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!j.is_boolean()) mismatch();
    out = j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!j.is_number_integer()) mismatch();
    // In range of T, never wrapped (threads = 4294967297 must not become 1).
    const bool fits = j.is_number_unsigned()
                          ? j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                          : std::in_range<T>(j.get<int64_t>());
    if (!fits)
      throw ConfigError(path, fmt::format("{} is out of range for {} ([{}, {}])", brief(j.dump()), type_name<T>(),
                                          std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
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
    throw ConfigError(path, fmt::format("unknown value '{}'; expected one of: {}", brief(text), names));
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

/// Runs `validate(path, context...)` on `options` and on every option struct inside it (inline
/// groups and vectors included) that has such an overload, with each one's dotted path: the checks
/// that need more than the options themselves, e.g. prompt layers against the backbone's depth
/// (`validate(path, const BackboneDims&)`). Call it once the context is known, before building.
template <ReflectedOptions T, class... Context>
void validate_in_context(const T& options, const std::string& path, const Context&... context) {
  static_assert(sizeof...(Context) > 0, "validate_in_context needs a context; plain validate(path) runs when reading");
  if constexpr (requires { options.validate(path, context...); }) options.validate(path, context...);
  std::apply(
      [&](const auto&... f) {
        auto visit = [&](const auto& one) {
          using F = std::decay_t<decltype(one)>;
          const auto& value = options.*(one.member);
          using V = std::decay_t<decltype(value)>;
          if constexpr (detail::IsInline<F>::value) {
            validate_in_context(value, path, context...);
          } else if constexpr (ReflectedOptions<V>) {
            validate_in_context(value, detail::join_path(path, one.name), context...);
          } else if constexpr (detail::IsVector<V>::value) {
            if constexpr (ReflectedOptions<typename V::value_type>)
              for (std::size_t i = 0; i < value.size(); ++i)
                validate_in_context(value[i], fmt::format("{}[{}]", detail::join_path(path, one.name), i), context...);
          }
        };
        (visit(f), ...);
      },
      T::fields());
}

/// Throws ConfigError(path.key, message) unless `condition` holds.
inline void require_option(bool condition, const std::string& path, std::string_view key,
                           const std::string& message) {
  if (!condition) throw ConfigError(detail::join_path(path, key), message);
}

/// The first dotted path at which two JSON documents differ ("" when equal), e.g. to name the
/// field a resumed run changed.
inline std::string first_difference(const Json& a, const Json& b, const std::string& path = "") {
  auto child = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (a.is_object() && b.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (!b.contains(key)) return child(key);
      if (auto d = first_difference(value, b.at(key), child(key)); !d.empty()) return d;
    }
    for (const auto& [key, value] : b.items())
      if (!a.contains(key)) return child(key);
    return "";
  }
  return a == b ? "" : (path.empty() ? "<root>" : path);
}

}  // namespace clprompt
