/*
 * Stands in for <curl/curl.h> when librdkafka is built without curl (the arm64 deploy build).
 *
 * librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> under `#ifdef WITH_OAUTHBEARER_OIDC`,
 * and its CMake config always defines that macro (`#cmakedefine01`, so 0 without curl): the
 * header must exist, but nothing of it is used when WITH_CURL is 0. Found through C_INCLUDE_PATH
 * (.cargo/config.toml).
 */
