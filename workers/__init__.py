"""Workers: Celery tasks that embed chunks and write them to Milvus."""
