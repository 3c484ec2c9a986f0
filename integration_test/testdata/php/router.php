<?php
// The PHP oracle's router (integration_test/phporacle_test.go): answers every
// request with what PHP read from it, as JSON. Every string (key or value)
// is hex-encoded and every scalar serialize()d first, so that the test sees
// PHP's reading byte for byte, types included. For HEAD, whose answer has no
// body, the same JSON goes base64-encoded in the X-PHP-View header.

function enc($v) {
    if (is_array($v)) {
        $o = [];
        foreach ($v as $k => $x) {
            $o[bin2hex((string)$k)] = enc($x);
        }
        return (object)$o;
    }
    return bin2hex(serialize($v));
}

$input = file_get_contents('php://input');
$method = $_SERVER['REQUEST_METHOD'];
$ct = $_SERVER['CONTENT_TYPE'] ?? '';
// The media type as main/SAPI.c cuts it.
$mt = strtolower(strtok($ct === '' ? ' ' : $ct, ';, ') ?: '');

$view = [
    'php' => 1,
    'method' => $method,
    'get' => enc($_GET),
    'post' => enc($_POST),
    'cookie' => enc($_COOKIE),
    'files' => [],
    'input' => bin2hex($input),
];
foreach ($_FILES as $name => $f) {
    $view['files'][bin2hex((string)$name)] = enc(['name' => $f['name'], 'type' => $f['type'], 'size' => $f['size'], 'error' => $f['error']]);
}
$view['files'] = (object)$view['files'];
// What an amoCRM endpoint may read from php://input: a JSON object on any
// method, and a form on methods PHP does not parse into $_POST.
$trimmed = ltrim($input, " \t\r\n");
if ($trimmed !== '' && $trimmed[0] === '{') {
    $j = json_decode($input, true);
    $view['json'] = is_array($j) ? enc($j) : null;
}
if ($method !== 'POST' && $mt === 'application/x-www-form-urlencoded') {
    parse_str($input, $form);
    $view['form'] = enc($form);
}

$out = json_encode($view, JSON_FORCE_OBJECT);
header('Content-Type: application/json');
if ($method === 'HEAD') {
    header('X-PHP-View: ' . base64_encode($out));
}
echo $out;
