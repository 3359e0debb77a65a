"""Camera frames as an MJPEG stream over HTTP, the way IP cameras serve them: the twin posing as
a cell's drivers serves its renders here, and the camera node reads them with its OpenCV driver
(cv2.VideoCapture on http://host:port/<camera>.mjpg), the same code that reads a real camera.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

BOUNDARY = b"frame"


class MjpegServer:
    def __init__(self, port: int = 0, host: str = "127.0.0.1", quality: int = 95):
        self.quality = quality
        self._frames: dict[str, tuple[int, bytes]] = {}  # camera -> (sequence, jpeg)
        self._cond = threading.Condition()
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                camera = self.path.strip("/").removesuffix(".mjpg")
                if camera not in server._frames:
                    self.send_error(404, f"no camera {camera!r}; serving {sorted(server._frames)}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=" + BOUNDARY.decode())
                self.end_headers()
                seq = -1
                try:
                    while True:
                        with server._cond:
                            server._cond.wait_for(lambda: server._closed or server._frames[camera][0] != seq, 1.0)
                            if server._closed:
                                return
                            seq, jpg = server._frames[camera]
                        self.wfile.write(b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return  # the reader went away

            def log_message(self, *args):  # quiet: one line per request would flood the node log
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, camera: str) -> str:
        return f"http://127.0.0.1:{self.port}/{camera}.mjpg"

    def publish(self, camera: str, rgb: np.ndarray) -> None:
        import cv2

        ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"cannot encode a frame of shape {rgb.shape}")
        with self._cond:
            seq = self._frames.get(camera, (-1, b""))[0] + 1
            self._frames[camera] = (seq, jpg.tobytes())
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
