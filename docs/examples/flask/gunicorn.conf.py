from warmstart.integrations import gunicorn as warm

bind = "127.0.0.1:8000"
workers = 4
wsgi_app = "app:create_app()"
preload_app = True
warm.configure(namespace="catalog")  # the store directory: $WARMSTART_DIR
post_fork = warm.post_fork
post_worker_init = warm.post_worker_init
worker_exit = warm.worker_exit
