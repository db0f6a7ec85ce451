#!/usr/bin/env bash
# Java for the Spark test (issue 15): a headless OpenJDK from Debian's packages, installed only when
# `java` is missing. pyspark 4 needs Java 17 or newer.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
    java -version 2>&1 | head -1
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq openjdk-17-jre-headless >/dev/null
java -version 2>&1 | head -1
