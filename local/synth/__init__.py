"""The embedded synthetic Mandarin voice-search corpus (templates + jieba words,
spoken by espeak-ng's cmn voice, with noise and reverberation).  See `generate`."""
