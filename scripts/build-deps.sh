#!/usr/bin/env bash
# Sourced by run.sh and test.sh: installs what building dts needs on a fresh
# Debian machine (a C toolchain, and cmake plus curl's headers for the bundled
# librdkafka), then checks that cargo is there. test.sh also installs the
# browser of the dashboard tests (ensure_test_browser).

ensure_build_deps() {
    local want=()
    command -v cc >/dev/null 2>&1 || want+=(build-essential)
    command -v pkg-config >/dev/null 2>&1 || want+=(pkg-config)
    command -v python3 >/dev/null 2>&1 || want+=(python3)
    command -v cmake >/dev/null 2>&1 || want+=(cmake)
    [ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || want+=(libcurl4-openssl-dev)
    # librdkafka links OpenSSL for TLS and SASL/SCRAM to Kafka.
    [ -e /usr/include/openssl/ssl.h ] || want+=(libssl-dev)
    if [ ${#want[@]} -gt 0 ]; then
        echo "installing ${want[*]}" >&2
        local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: install Rust (https://rustup.rs) and run this again" >&2
        exit 1
    fi
}

# Debian's Chromium and its WebDriver, for the dashboard's browser tests.
ensure_test_browser() {
    local want=()
    [ -x /usr/bin/chromium ] || want+=(chromium)
    [ -x /usr/bin/chromedriver ] || want+=(chromium-driver)
    if [ ${#want[@]} -gt 0 ]; then
        echo "installing ${want[*]}" >&2
        local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
        $sudo apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
    fi
}
